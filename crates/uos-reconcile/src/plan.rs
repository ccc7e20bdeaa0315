//! The plan for one declared org: what applying its file would change in the store, read
//! from the store as it is now, with every change the API's rules would refuse listed as a
//! refusal instead. Nothing here writes.
//!
//! Only what the file declares is compared: roles, members and service accounts that exist
//! but are not declared are left alone (pruning applies only to objects the reconciler
//! created, and only with `prune: true`).

use std::collections::BTreeSet;

use serde::Serialize;
use uos_domain::{
    BudgetKey, BudgetScope, Email, InviteState, MembershipStatus, OrgId, OrgStatus, RoleName,
};
use uos_store::{MemberFilter, PageRequest, ReadTx, StoreError};

use crate::declared::{DeclaredBudget, DeclaredOrg};

/// Rows per page while reading an org's lists.
const PAGE: u32 = 200;

/// Every item of a paged list: `all_pages!(|page| r.list_x(…, &page))`.
macro_rules! all_pages {
    (|$page:ident| $read:expr) => {{
        let mut out = Vec::new();
        let mut $page = PageRequest::first(PAGE);
        loop {
            let got = $read.await?;
            out.extend(got.items);
            match got.next {
                Some(after) => $page.after = Some(after),
                None => break out,
            }
        }
    }};
}
/// The changes applying one org's file would make, and those it may not make.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OrgPlan {
    pub file: String,
    pub org: String,
    pub changes: Vec<Change>,
    pub refusals: Vec<Refusal>,
}

/// One change, as the API would make it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    CreateOrg {
        display_name: String,
    },
    SetDisplayName {
        from: String,
        to: String,
    },
    CreateRole {
        name: String,
        permissions: Vec<String>,
        inherits: Vec<String>,
        description: Option<String>,
    },
    UpdateRole {
        name: String,
        permissions: Vec<String>,
        inherits: Vec<String>,
        description: Option<String>,
    },
    /// An existing user joins the org.
    AddMember {
        email: String,
        roles: Vec<String>,
    },
    /// An unknown address is invited.
    Invite {
        email: String,
        roles: Vec<String>,
    },
    SetMemberRoles {
        email: String,
        from: Vec<String>,
        to: Vec<String>,
    },
    CreateServiceAccount {
        name: String,
        roles: Vec<String>,
        description: Option<String>,
    },
    UpdateServiceAccount {
        name: String,
        roles: Vec<String>,
        description: Option<String>,
    },
    SetBudget {
        from: Option<DeclaredBudget>,
        to: DeclaredBudget,
    },
}

/// A declared change the API's rules refuse; applying the file leaves it undone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// The field of the file, e.g. `members[0].roles`.
    pub field: String,
    pub reason: String,
}

/// The plan for `declared` against the store as `r` reads it.
pub async fn plan_org(r: &mut dyn ReadTx, declared: &DeclaredOrg) -> Result<OrgPlan, StoreError> {
    let mut plan = OrgPlan {
        file: declared.file.clone(),
        org: declared.slug.to_string(),
        changes: Vec::new(),
        refusals: Vec::new(),
    };
    let Some(org) = r.get_org_by_slug(&declared.slug).await? else {
        // A new org: everything it declares is created.
        plan.changes.push(Change::CreateOrg {
            display_name: declared.display_name.clone(),
        });
        for role in &declared.roles {
            plan.changes.push(Change::CreateRole {
                name: role.name.to_string(),
                permissions: permission_names(&role.permissions),
                inherits: names(&role.inherits),
                description: role.description.clone(),
            });
        }
        for m in &declared.members {
            let email = m.email.to_string();
            let roles = names(&m.roles);
            plan.changes
                .push(match r.get_user_by_email(&m.email).await? {
                    Some(_) => Change::AddMember { email, roles },
                    None => Change::Invite { email, roles },
                });
        }
        for a in &declared.service_accounts {
            plan.changes.push(Change::CreateServiceAccount {
                name: a.name.clone(),
                roles: names(&a.roles),
                description: a.description.clone(),
            });
        }
        if let Some(b) = declared.budget {
            plan.changes.push(Change::SetBudget { from: None, to: b });
        }
        return Ok(plan);
    };
    if org.status != OrgStatus::Active {
        // The API changes nothing in a suspended or deleted org; resuming or restoring it is
        // an operator's decision, not the file's.
        plan.refusals.push(Refusal {
            field: "slug".to_owned(),
            reason: format!(
                "the org is {}: nothing in it can change until it is active again",
                org.status.as_str()
            ),
        });
        return Ok(plan);
    }
    if org.display_name != declared.display_name {
        plan.changes.push(Change::SetDisplayName {
            from: org.display_name.clone(),
            to: declared.display_name.clone(),
        });
    }
    let roles = r.all_roles(org.id).await?;
    for role in &declared.roles {
        let (permissions, inherits) = (permission_names(&role.permissions), names(&role.inherits));
        match roles.iter().find(|l| l.name == role.name) {
            None => plan.changes.push(Change::CreateRole {
                name: role.name.to_string(),
                permissions,
                inherits,
                description: role.description.clone(),
            }),
            Some(live) => {
                let same = sorted(&permission_names(&live.permissions)) == sorted(&permissions)
                    && sorted(&names(&live.inherits)) == sorted(&inherits)
                    && live.description == role.description;
                if !same {
                    plan.changes.push(Change::UpdateRole {
                        name: role.name.to_string(),
                        permissions,
                        inherits,
                        description: role.description.clone(),
                    });
                }
            }
        }
    }
    members(r, org.id, declared, &mut plan).await?;
    let accounts = all_pages!(|page| r.list_service_accounts(org.id, false, &page));
    for a in &declared.service_accounts {
        let roles = names(&a.roles);
        match accounts.iter().find(|l| l.name == a.name) {
            None => plan.changes.push(Change::CreateServiceAccount {
                name: a.name.clone(),
                roles,
                description: a.description.clone(),
            }),
            Some(live) => {
                if sorted(&names(&live.roles)) != sorted(&roles)
                    || live.description != a.description
                {
                    plan.changes.push(Change::UpdateServiceAccount {
                        name: a.name.clone(),
                        roles,
                        description: a.description.clone(),
                    });
                }
            }
        }
    }
    if let Some(to) = declared.budget {
        let key = BudgetKey {
            org_id: org.id,
            scope: BudgetScope::Org,
            scope_id: org.id.0,
        };
        let from = r.get_budget(&key).await?.map(|b| DeclaredBudget {
            period: b.period.as_str(),
            limit_cents: b.limit_cents,
            warn_percent: b.warn_percent,
            block_percent: b.block_percent,
        });
        if from != Some(to) {
            plan.changes.push(Change::SetBudget { from, to });
        }
    }
    Ok(plan)
}

/// Members by email: joins, invites and role changes, and the last owner kept.
async fn members(
    r: &mut dyn ReadTx,
    org: OrgId,
    declared: &DeclaredOrg,
    plan: &mut OrgPlan,
) -> Result<(), StoreError> {
    let filter = MemberFilter { org, status: None };
    let live = all_pages!(|page| r.list_members(&filter, &page));
    let ids: Vec<_> = live.iter().map(|m| m.user_id).collect();
    let users = r.get_users(&ids).await?;
    let email_of = |id| users.iter().find(|u| u.id == id).map(|u| u.email.clone());
    let owners: Vec<Email> = live
        .iter()
        .filter(|m| m.status == MembershipStatus::Active && m.roles.iter().any(RoleName::is_owner))
        .filter_map(|m| email_of(m.user_id))
        .collect();
    let now = uos_domain::now();
    let invites = all_pages!(|page| r.list_invites(org, &page));
    for (i, m) in declared.members.iter().enumerate() {
        let roles = names(&m.roles);
        let current = live
            .iter()
            .find(|l| email_of(l.user_id).as_ref() == Some(&m.email));
        match current {
            Some(l) => {
                let from = names(&l.roles);
                if sorted(&from) == sorted(&roles) {
                    continue;
                }
                let demoted = owners.contains(&m.email) && !m.roles.iter().any(RoleName::is_owner);
                if demoted && owners.len() == 1 {
                    plan.refusals.push(Refusal {
                        field: format!("members[{i}].roles"),
                        reason: format!(
                            "{} is the org's last owner and would lose the owner role",
                            m.email
                        ),
                    });
                    continue;
                }
                plan.changes.push(Change::SetMemberRoles {
                    email: m.email.to_string(),
                    from,
                    to: roles,
                });
            }
            None => {
                let pending = invites
                    .iter()
                    .any(|inv| inv.email == m.email && inv.state(now) == InviteState::Pending);
                if pending {
                    continue;
                }
                let email = m.email.to_string();
                plan.changes
                    .push(match r.get_user_by_email(&m.email).await? {
                        Some(_) => Change::AddMember { email, roles },
                        None => Change::Invite { email, roles },
                    });
            }
        }
    }
    Ok(())
}

fn names<T: ToString>(items: &[T]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

fn permission_names(items: &[uos_domain::Permission]) -> Vec<String> {
    items.iter().map(|p| p.as_str().to_owned()).collect()
}

fn sorted(items: &[String]) -> BTreeSet<&str> {
    items.iter().map(String::as_str).collect()
}

impl OrgPlan {
    /// The plan as people read it: one line per change, `+` new, `~` changed, `!` refused.
    pub fn render(&self) -> String {
        let mut out = format!("{} ({}):\n", self.file, self.org);
        if self.changes.is_empty() && self.refusals.is_empty() {
            out.push_str("  no changes\n");
        }
        let list = |v: &[String]| format!("[{}]", v.join(", "));
        for c in &self.changes {
            let line = match c {
                Change::CreateOrg { display_name } => format!("+ create org {:?}", display_name),
                Change::SetDisplayName { from, to } => format!("~ display_name {from:?} → {to:?}"),
                Change::CreateRole {
                    name,
                    permissions,
                    inherits,
                    ..
                } => format!(
                    "+ role {name}: permissions {} inherits {}",
                    list(permissions),
                    list(inherits)
                ),
                Change::UpdateRole {
                    name,
                    permissions,
                    inherits,
                    ..
                } => format!(
                    "~ role {name}: permissions {} inherits {}",
                    list(permissions),
                    list(inherits)
                ),
                Change::AddMember { email, roles } => {
                    format!("+ member {email} joins as {}", list(roles))
                }
                Change::Invite { email, roles } => format!("+ invite {email} as {}", list(roles)),
                Change::SetMemberRoles { email, from, to } => {
                    format!("~ member {email}: roles {} → {}", list(from), list(to))
                }
                Change::CreateServiceAccount { name, roles, .. } => {
                    format!("+ service account {name:?} as {}", list(roles))
                }
                Change::UpdateServiceAccount { name, roles, .. } => {
                    format!("~ service account {name:?}: roles {}", list(roles))
                }
                Change::SetBudget { from, to } => format!(
                    "~ budget {} → {}",
                    from.map_or_else(|| "none".to_owned(), |b| budget(&b)),
                    budget(to)
                ),
            };
            out.push_str("  ");
            out.push_str(&line);
            out.push('\n');
        }
        for refusal in &self.refusals {
            out.push_str(&format!(
                "  ! refused: {}: {}\n",
                refusal.field, refusal.reason
            ));
        }
        out
    }
}

fn budget(b: &DeclaredBudget) -> String {
    format!(
        "{} {} cents (warn {}%, block {}%)",
        b.period, b.limit_cents, b.warn_percent, b.block_percent
    )
}
