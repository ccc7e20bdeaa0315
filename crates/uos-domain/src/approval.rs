//! The one approval mechanism behind budget overrides, break-glass access and privileged
//! password resets: a request waits for two distinct approvers, neither of them the requester,
//! then is active for a while; pending requests and active grants both expire. The rules are
//! written once here; each kind only says what it grants.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

use crate::{DomainError, OrgId, UserId};

/// Approvals a request needs before it is active.
pub const REQUIRED_APPROVERS: usize = 2;

/// What an approval grants once active.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalKind {
    /// More spend on one budget of an org (`extra_cents` on the budget's effective limit).
    BudgetOverride,
    /// Roles for the requester in an org (or every org) for a few minutes.
    BreakGlass,
    /// A password reset token for a privileged account.
    PasswordReset,
}

impl ApprovalKind {
    pub const ALL: [ApprovalKind; 3] =
        [Self::BudgetOverride, Self::BreakGlass, Self::PasswordReset];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BudgetOverride => "budget_override",
            Self::BreakGlass => "break_glass",
            Self::PasswordReset => "password_reset",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == raw)
            .ok_or_else(|| DomainError::invalid("invalid_kind", format!("unknown kind {raw}")))
    }
}

/// Where an approval stands. A pending request or an active grant past its time *is* expired,
/// whatever its stored status says (see [`Approval::status_at`]), so no job has to run for an
/// expiry to take effect; a sweep later stores and audits it ([`Approval::expire`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    Pending,
    Active,
    Rejected,
    Revoked,
    Expired,
}

impl ApprovalStatus {
    pub const ALL: [ApprovalStatus; 5] = [
        Self::Pending,
        Self::Active,
        Self::Rejected,
        Self::Revoked,
        Self::Expired,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Rejected => "rejected",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| DomainError::invalid("invalid_status", format!("unknown status {raw}")))
    }
}

impl fmt::Display for ApprovalStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One approver's approval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approver {
    pub user_id: Uuid,
    pub approved_at: DateTime<Utc>,
}

/// A request for something that takes two approvers.
#[derive(Clone, Debug, PartialEq)]
pub struct Approval {
    pub id: Uuid,
    pub kind: ApprovalKind,
    /// The org the grant is in; `None` for platform-wide break-glass and password resets.
    pub org_id: Option<OrgId>,
    /// Who asked: never an approver of their own request. For a password reset, the account.
    pub requested_by: UserId,
    /// The one thing it is about, where the kind has one (a password reset's id).
    pub subject_id: Option<Uuid>,
    pub reason: String,
    /// What the kind grants (an override's budget and amount, break-glass roles, the reset id).
    pub detail: serde_json::Value,
    /// As stored; read [`status_at`](Self::status_at) for where it stands now.
    pub status: ApprovalStatus,
    pub approvers: Vec<Approver>,
    pub created_at: DateTime<Utc>,
    /// A pending request expires at this time.
    pub pending_until: DateTime<Utc>,
    /// How long the grant lasts once active.
    pub grant_secs: i64,
    pub active_from: Option<DateTime<Utc>>,
    pub active_until: Option<DateTime<Utc>>,
    /// When it was rejected or revoked, and by whom.
    pub ended_at: Option<DateTime<Utc>>,
    pub ended_by: Option<UserId>,
    pub version: i64,
}

/// What a new request asks for.
#[derive(Clone, Debug)]
pub struct ApprovalRequest {
    pub kind: ApprovalKind,
    pub org_id: Option<OrgId>,
    pub requested_by: UserId,
    pub subject_id: Option<Uuid>,
    pub reason: String,
    pub detail: serde_json::Value,
    /// How long it may wait for its approvers.
    pub pending_for: Duration,
    /// How long the grant lasts once active.
    pub grant_for: Duration,
}

/// Why an approver's step was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApprovalRefusal {
    /// The requester tried to approve or reject their own request.
    OwnRequest,
    /// This approver already approved it.
    AlreadyApproved,
    /// It is no longer pending (or, for a revoke, no longer pending or active).
    NotOpen(ApprovalStatus),
}

/// What an approval did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Approved {
    /// Recorded; more approvers are needed.
    Recorded { approvals: usize },
    /// The last approval needed: the grant is active from now.
    Activated,
}

impl Approval {
    /// A new pending request.
    pub fn request(req: ApprovalRequest, now: DateTime<Utc>) -> Self {
        Self {
            id: crate::new_id(),
            kind: req.kind,
            org_id: req.org_id,
            requested_by: req.requested_by,
            subject_id: req.subject_id,
            reason: req.reason,
            detail: req.detail,
            status: ApprovalStatus::Pending,
            approvers: Vec::new(),
            created_at: now,
            pending_until: now + req.pending_for,
            grant_secs: req.grant_for.num_seconds(),
            active_from: None,
            active_until: None,
            ended_at: None,
            ended_by: None,
            version: 1,
        }
    }

    /// Where it stands at `now`: a pending request past `pending_until`, or an active grant
    /// past `active_until`, is expired.
    pub fn status_at(&self, now: DateTime<Utc>) -> ApprovalStatus {
        match self.status {
            ApprovalStatus::Pending if now >= self.pending_until => ApprovalStatus::Expired,
            ApprovalStatus::Active if self.active_until.is_none_or(|until| now >= until) => {
                ApprovalStatus::Expired
            }
            other => other,
        }
    }

    /// Whether the grant is in force at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.status_at(now) == ApprovalStatus::Active
    }

    /// `approver` approves. The requester never counts, nor does anyone twice; the
    /// [`REQUIRED_APPROVERS`]th distinct approval activates the grant for `grant_secs`.
    pub fn approve(
        &mut self,
        approver: UserId,
        now: DateTime<Utc>,
    ) -> Result<Approved, ApprovalRefusal> {
        self.check_open_to(approver, now)?;
        if self.approvers.iter().any(|a| a.user_id == approver.0) {
            return Err(ApprovalRefusal::AlreadyApproved);
        }
        self.approvers.push(Approver {
            user_id: approver.0,
            approved_at: now,
        });
        self.version += 1;
        if self.approvers.len() < REQUIRED_APPROVERS {
            return Ok(Approved::Recorded {
                approvals: self.approvers.len(),
            });
        }
        self.status = ApprovalStatus::Active;
        self.active_from = Some(now);
        self.active_until = Some(now + Duration::seconds(self.grant_secs));
        Ok(Approved::Activated)
    }

    /// An approver turns a pending request down; it can no longer become active.
    pub fn reject(&mut self, by: UserId, now: DateTime<Utc>) -> Result<(), ApprovalRefusal> {
        self.check_open_to(by, now)?;
        self.end(ApprovalStatus::Rejected, by, now);
        Ok(())
    }

    /// Withdraw a pending request or end an active grant early. The requester may revoke
    /// their own request (giving up rights is always allowed).
    pub fn revoke(&mut self, by: UserId, now: DateTime<Utc>) -> Result<(), ApprovalRefusal> {
        match self.status_at(now) {
            ApprovalStatus::Pending | ApprovalStatus::Active => {
                self.end(ApprovalStatus::Revoked, by, now);
                Ok(())
            }
            other => Err(ApprovalRefusal::NotOpen(other)),
        }
    }

    /// Record that it expired (it must be past its time): `false` when there is nothing to
    /// record, because it is not expired or the expiry is already stored.
    pub fn expire(&mut self, now: DateTime<Utc>) -> bool {
        if self.status == ApprovalStatus::Expired || self.status_at(now) != ApprovalStatus::Expired
        {
            return false;
        }
        self.status = ApprovalStatus::Expired;
        self.version += 1;
        true
    }

    fn check_open_to(&self, who: UserId, now: DateTime<Utc>) -> Result<(), ApprovalRefusal> {
        let status = self.status_at(now);
        if status != ApprovalStatus::Pending {
            return Err(ApprovalRefusal::NotOpen(status));
        }
        if who == self.requested_by {
            return Err(ApprovalRefusal::OwnRequest);
        }
        Ok(())
    }

    fn end(&mut self, status: ApprovalStatus, by: UserId, now: DateTime<Utc>) {
        self.status = status;
        self.ended_at = Some(now);
        self.ended_by = Some(by);
        self.version += 1;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn user(n: u128) -> UserId {
        UserId(Uuid::from_u128(n))
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::UNIX_EPOCH + Duration::seconds(secs)
    }

    fn pending() -> Approval {
        Approval::request(
            ApprovalRequest {
                kind: ApprovalKind::BudgetOverride,
                org_id: None,
                requested_by: user(1),
                subject_id: None,
                reason: "launch".into(),
                detail: serde_json::Value::Null,
                pending_for: Duration::seconds(100),
                grant_for: Duration::seconds(50),
            },
            at(0),
        )
    }

    #[test]
    fn two_distinct_approvers_other_than_the_requester_activate_it() {
        let mut a = pending();
        assert_eq!(a.approve(user(1), at(1)), Err(ApprovalRefusal::OwnRequest));
        assert_eq!(
            a.approve(user(2), at(2)),
            Ok(Approved::Recorded { approvals: 1 })
        );
        assert_eq!(
            a.approve(user(2), at(3)),
            Err(ApprovalRefusal::AlreadyApproved)
        );
        assert_eq!(a.status_at(at(3)), ApprovalStatus::Pending);
        assert_eq!(a.approve(user(3), at(4)), Ok(Approved::Activated));
        assert_eq!(a.active_until, Some(at(54)));
        assert!(a.is_active(at(53)));
        assert_eq!(
            a.approve(user(4), at(5)),
            Err(ApprovalRefusal::NotOpen(ApprovalStatus::Active))
        );
    }

    #[test]
    fn pending_requests_and_active_grants_expire() {
        let mut a = pending();
        assert_eq!(a.status_at(at(99)), ApprovalStatus::Pending);
        assert_eq!(a.status_at(at(100)), ApprovalStatus::Expired);
        assert_eq!(
            a.approve(user(2), at(100)),
            Err(ApprovalRefusal::NotOpen(ApprovalStatus::Expired))
        );
        a.approve(user(2), at(10)).unwrap();
        a.approve(user(3), at(20)).unwrap();
        assert!(a.is_active(at(69)));
        assert!(
            !a.is_active(at(70)),
            "grant_secs after activation, not after the request"
        );
        assert_eq!(a.status_at(at(70)), ApprovalStatus::Expired);
        assert!(
            a.revoke(user(1), at(70)).is_err(),
            "an expired grant has nothing to revoke"
        );
        assert!(a.expire(at(70)), "the sweep stores the expiry once");
        assert_eq!(a.status_at(at(70)), ApprovalStatus::Expired);
        assert!(!a.expire(at(71)));
        assert!(!pending().expire(at(1)), "nothing to store before its time");
    }

    #[test]
    fn reject_and_revoke_end_it_for_good() {
        let mut a = pending();
        assert_eq!(a.reject(user(1), at(1)), Err(ApprovalRefusal::OwnRequest));
        a.reject(user(2), at(1)).unwrap();
        assert_eq!(a.status_at(at(2)), ApprovalStatus::Rejected);
        assert_eq!(a.ended_by, Some(user(2)));
        assert!(a.approve(user(3), at(2)).is_err());

        let mut b = pending();
        b.revoke(user(1), at(1)).unwrap();
        assert_eq!(b.status_at(at(1)), ApprovalStatus::Revoked);

        let mut c = pending();
        c.approve(user(2), at(1)).unwrap();
        c.approve(user(3), at(1)).unwrap();
        c.revoke(user(2), at(2)).unwrap();
        assert!(!c.is_active(at(3)));
        assert_eq!(
            c.revoke(user(2), at(3)),
            Err(ApprovalRefusal::NotOpen(ApprovalStatus::Revoked))
        );
    }

    #[test]
    fn names_round_trip() {
        for k in ApprovalKind::ALL {
            assert_eq!(ApprovalKind::parse(k.as_str()).unwrap(), k);
        }
        for s in ApprovalStatus::ALL {
            assert_eq!(ApprovalStatus::parse(s.as_str()).unwrap(), s);
        }
    }
}
