//! Proof of an allow. A [`Capability`] can only be made by [`crate::Authorizer::authorize`], so
//! service functions that take one cannot be reached without a policy check.

use uuid::Uuid;

use crate::{Action, AuthzError};

/// Permission to perform one action, for one principal, in (at most) one org.
///
/// Deliberately neither `Clone` nor constructible outside this crate: each check yields one
/// capability, and nothing else can forge it.
#[derive(Debug)]
#[must_use = "a capability is the proof that the action was authorized; pass it to the service"]
pub struct Capability {
    action: Action,
    principal_id: Option<Uuid>,
    org_id: Option<Uuid>,
    rule: String,
}

impl Capability {
    pub(crate) fn new(
        action: Action,
        principal_id: Option<Uuid>,
        org_id: Option<Uuid>,
        rule: String,
    ) -> Self {
        Self {
            action,
            principal_id,
            org_id,
            rule,
        }
    }

    /// The action that was allowed.
    pub fn action(&self) -> Action {
        self.action
    }

    /// The principal that was allowed; `None` for anonymous callers of public actions.
    pub fn principal_id(&self) -> Option<Uuid> {
        self.principal_id
    }

    /// The org of the resource the check was made for, if any.
    pub fn org_id(&self) -> Option<Uuid> {
        self.org_id
    }

    /// The policy rule that allowed it, worth recording in audit events.
    pub fn rule(&self) -> &str {
        &self.rule
    }

    /// Checks that this capability covers `action` in `org_id`, so a service can refuse a
    /// capability obtained for something else (a handler passing the wrong one is a bug).
    pub fn ensure(&self, action: Action, org_id: Option<Uuid>) -> Result<(), AuthzError> {
        if self.action == action && self.org_id == org_id {
            Ok(())
        } else {
            Err(AuthzError::CapabilityMismatch {
                held_action: self.action,
                held_org: self.org_id,
                wanted_action: action,
                wanted_org: org_id,
            })
        }
    }
}

impl Capability {
    /// Checks that a change in `org_id` lies within this capability: one issued for an org
    /// covers changes in that org only, so a capability obtained for org A can never commit a
    /// write in org B. One issued for no org (platform and self-service actions, start-up and
    /// background tasks) is not confined to an org: creating an org, joining a federated user
    /// to the provider's org and sweeping every org's keys are such actions.
    pub fn ensure_covers_org(&self, org_id: Uuid) -> Result<(), AuthzError> {
        match self.org_id {
            Some(held) if held != org_id => Err(AuthzError::CapabilityOutsideOrg {
                action: self.action,
                held_org: held,
                wanted_org: org_id,
            }),
            _ => Ok(()),
        }
    }
}

/// Why [`crate::Authorizer::authorize`] refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denied {
    /// The caller may not even see the org; answer as if it did not exist.
    NotFound,
    /// The caller may see the resource but not do this; `rule` is shown to the client.
    Forbidden { rule: String },
}
