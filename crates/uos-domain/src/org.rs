//! Organizations and their status machine (active / suspended / soft-deleted with a restore
//! window).

use crate::{DomainError, OrgId, OrgSlug};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgStatus {
    Active,
    Suspended,
    Deleted,
}

impl OrgStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        match s {
            "active" => Ok(Self::Active),
            "suspended" => Ok(Self::Suspended),
            "deleted" => Ok(Self::Deleted),
            _ => Err(DomainError::invalid(
                "invalid_status",
                "status must be active, suspended or deleted",
            )),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Org {
    pub id: OrgId,
    pub slug: OrgSlug,
    pub display_name: String,
    pub status: OrgStatus,
    /// What `restore` returns to; set only while deleted.
    pub status_before_delete: Option<OrgStatus>,
    pub deleted_at: Option<DateTime<Utc>>,
    /// Longest lifetime, in days, of an API key issued in this org; `None` = no org limit.
    pub api_key_max_days: Option<u32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Optimistic-concurrency version, exposed as the `ETag`.
    pub version: i64,
}

impl Org {
    pub fn new(slug: OrgSlug, display_name: String, now: DateTime<Utc>) -> Self {
        Self {
            id: OrgId::new(),
            slug,
            display_name,
            status: OrgStatus::Active,
            status_before_delete: None,
            deleted_at: None,
            api_key_max_days: None,
            created_at: now,
            updated_at: now,
            version: 1,
        }
    }

    fn moved(&mut self, to: OrgStatus, now: DateTime<Utc>) {
        self.status = to;
        self.updated_at = now;
        self.version += 1;
    }

    fn refuse(&self, to: &str) -> DomainError {
        DomainError::Transition {
            from: self.status.as_str().into(),
            to: to.into(),
        }
    }

    pub fn suspend(&mut self, now: DateTime<Utc>) -> Result<(), DomainError> {
        match self.status {
            OrgStatus::Active => {
                self.moved(OrgStatus::Suspended, now);
                Ok(())
            }
            _ => Err(self.refuse("suspended")),
        }
    }

    pub fn resume(&mut self, now: DateTime<Utc>) -> Result<(), DomainError> {
        match self.status {
            OrgStatus::Suspended => {
                self.moved(OrgStatus::Active, now);
                Ok(())
            }
            _ => Err(self.refuse("active")),
        }
    }

    pub fn delete(&mut self, now: DateTime<Utc>) -> Result<(), DomainError> {
        match self.status {
            OrgStatus::Deleted => Err(self.refuse("deleted")),
            before => {
                self.status_before_delete = Some(before);
                self.deleted_at = Some(now);
                self.moved(OrgStatus::Deleted, now);
                Ok(())
            }
        }
    }

    /// Undo a soft delete, back to the status the org had, while inside `retention`.
    pub fn restore(&mut self, now: DateTime<Utc>, retention: Duration) -> Result<(), DomainError> {
        match (self.status, self.deleted_at) {
            (OrgStatus::Deleted, Some(at)) if now - at <= retention => {
                let to = self
                    .status_before_delete
                    .take()
                    .unwrap_or(OrgStatus::Active);
                self.deleted_at = None;
                self.moved(to, now);
                Ok(())
            }
            _ => Err(self.refuse("restored")),
        }
    }
}

/// Display names are free text for people, but bounded and free of control characters so they
/// render safely in logs, mails and UIs.
pub fn parse_display_name(raw: &str) -> Result<String, DomainError> {
    let s = raw.trim();
    if s.is_empty() || s.chars().count() > 200 {
        return Err(DomainError::invalid(
            "invalid_display_name",
            "display name must be 1 to 200 characters",
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            "invalid_display_name",
            "display name must not contain control characters",
        ));
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn org() -> Org {
        Org::new(OrgSlug::parse("acme").unwrap(), "Acme".into(), Utc::now())
    }

    #[test]
    fn lifecycle() {
        let now = Utc::now();
        let mut o = org();
        o.suspend(now).unwrap();
        assert!(o.suspend(now).is_err());
        o.resume(now).unwrap();
        assert!(o.resume(now).is_err());
        o.suspend(now).unwrap();
        o.delete(now).unwrap();
        assert!(o.delete(now).is_err());
        o.restore(now + Duration::days(1), Duration::days(30))
            .unwrap();
        assert_eq!(
            o.status,
            OrgStatus::Suspended,
            "restore returns to the status before delete"
        );
        assert_eq!(o.version, 6);
    }

    #[test]
    fn restore_window_closes() {
        let now = Utc::now();
        let mut o = org();
        o.delete(now).unwrap();
        assert!(o
            .restore(now + Duration::days(31), Duration::days(30))
            .is_err());
        assert_eq!(o.status, OrgStatus::Deleted);
    }

    #[test]
    fn display_names() {
        assert_eq!(parse_display_name("  Acme  ").unwrap(), "Acme");
        assert!(parse_display_name("").is_err());
        assert!(parse_display_name("a\u{0}b").is_err());
        assert!(parse_display_name(&"x".repeat(201)).is_err());
    }
}
