//! From a plan to what the service applies and what drift reports: each change becomes the
//! use-case step that makes it (with the file's typed values) and, when found by a drift
//! check, the difference between the file and the live org.

use serde_json::{json, Value};
use uos_domain::{DisplayName, Email, Period, RoleName};
use uos_service::{DriftDifference, NewBudget, NewRole, Step};

use crate::declared::DeclaredOrg;
use crate::plan::Change;

/// Why a change could not be turned into a step: the file and the plan disagree, which only
/// a bug can cause.
#[derive(Debug, thiserror::Error)]
#[error("the plan names {0}, which the file does not declare")]
pub struct Mismatch(String);

/// The steps that apply `changes` of `declared`, in order.
pub fn steps(declared: &DeclaredOrg, changes: &[Change]) -> Result<Vec<Step>, Mismatch> {
    changes.iter().map(|c| step(declared, c)).collect()
}

fn step(d: &DeclaredOrg, change: &Change) -> Result<Step, Mismatch> {
    let email = |e: &str| Email::parse(e).map_err(|_| Mismatch(format!("member {e}")));
    let member_roles = |e: &str| -> Result<Vec<RoleName>, Mismatch> {
        d.members
            .iter()
            .find(|m| m.email.as_str() == e)
            .map(|m| m.roles.clone())
            .ok_or_else(|| Mismatch(format!("member {e}")))
    };
    let role = |name: &str| -> Result<NewRole, Mismatch> {
        d.roles
            .iter()
            .find(|r| r.name.as_str() == name)
            .map(|r| NewRole {
                name: r.name.clone(),
                description: r.description.clone(),
                permissions: r.permissions.clone(),
                inherits: r.inherits.clone(),
            })
            .ok_or_else(|| Mismatch(format!("role {name}")))
    };
    let account = |name: &str| {
        d.service_accounts
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| Mismatch(format!("service account {name}")))
    };
    Ok(match change {
        Change::CreateOrg { owner, .. } => Step::CreateOrg {
            display_name: display_name(d)?,
            owner: email(owner)?,
        },
        Change::SetDisplayName { .. } => Step::SetDisplayName(display_name(d)?),
        Change::CreateRole { name, .. } => Step::CreateRole(role(name)?),
        Change::UpdateRole { name, .. } => Step::UpdateRole(role(name)?),
        Change::DeleteRole { name } => {
            Step::DeleteRole(RoleName::parse(name).map_err(|_| Mismatch(format!("role {name}")))?)
        }
        Change::AddMember { email: e, .. } => Step::AddMember {
            email: email(e)?,
            roles: member_roles(e)?,
        },
        Change::Invite { email: e, .. } => Step::Invite {
            email: email(e)?,
            roles: member_roles(e)?,
        },
        Change::SetMemberRoles { email: e, .. } => Step::SetMemberRoles {
            email: email(e)?,
            roles: member_roles(e)?,
        },
        Change::RemoveMember { email: e } => Step::RemoveMember(email(e)?),
        Change::CreateServiceAccount { name, .. } => {
            let a = account(name)?;
            Step::CreateServiceAccount {
                name: a.name.clone(),
                roles: a.roles.clone(),
                description: a.description.clone(),
            }
        }
        Change::UpdateServiceAccount { name, .. } => {
            let a = account(name)?;
            Step::UpdateServiceAccount {
                name: a.name.clone(),
                roles: a.roles.clone(),
                description: a.description.clone(),
            }
        }
        Change::DeleteServiceAccount { name } => Step::DeleteServiceAccount(name.clone()),
        Change::SetBudget { to, .. } => Step::SetBudget(NewBudget {
            period: Period::parse(to.period).map_err(|_| Mismatch("budget.period".into()))?,
            limit_cents: to.limit_cents,
            warn_percent: Some(to.warn_percent),
            block_percent: Some(to.block_percent),
        }),
    })
}

fn display_name(d: &DeclaredOrg) -> Result<DisplayName, Mismatch> {
    DisplayName::parse(&d.display_name).map_err(|_| Mismatch("display_name".into()))
}

/// What a change found by a drift check says: where the live org differs from the file.
pub fn difference(change: &Change) -> DriftDifference {
    let (path, declared, live) = match change {
        Change::CreateOrg { display_name, .. } => {
            ("org".to_owned(), json!(display_name), Value::Null)
        }
        Change::SetDisplayName { from, to } => ("display_name".to_owned(), json!(to), json!(from)),
        Change::CreateRole {
            name,
            permissions,
            inherits,
            description,
        } => (
            format!("roles[{name}]"),
            json!({"permissions": permissions, "inherits": inherits, "description": description}),
            Value::Null,
        ),
        Change::UpdateRole {
            name,
            permissions,
            inherits,
            description,
            from,
        } => (
            format!("roles[{name}]"),
            json!({"permissions": permissions, "inherits": inherits, "description": description}),
            json!(from),
        ),
        Change::DeleteRole { name } => (format!("roles[{name}]"), Value::Null, json!(name)),
        Change::AddMember { email, roles } | Change::Invite { email, roles } => (
            format!("members[{email}]"),
            json!({"roles": roles}),
            Value::Null,
        ),
        Change::SetMemberRoles { email, from, to } => {
            (format!("members[{email}].roles"), json!(to), json!(from))
        }
        Change::RemoveMember { email } => (format!("members[{email}]"), Value::Null, json!(email)),
        Change::CreateServiceAccount {
            name,
            roles,
            description,
        } => (
            format!("service_accounts[{name}]"),
            json!({"roles": roles, "description": description}),
            Value::Null,
        ),
        Change::UpdateServiceAccount {
            name,
            roles,
            description,
            from_roles,
            from_description,
        } => (
            format!("service_accounts[{name}]"),
            json!({"roles": roles, "description": description}),
            json!({"roles": from_roles, "description": from_description}),
        ),
        Change::DeleteServiceAccount { name } => (
            format!("service_accounts[{name}]"),
            Value::Null,
            json!(name),
        ),
        Change::SetBudget { from, to } => ("budget".to_owned(), json!(to), json!(from)),
    };
    DriftDifference {
        path,
        declared,
        live,
    }
}
