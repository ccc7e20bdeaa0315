//! The plan for one declared org: what applying its file would change in the store, read
//! from the store as it is now, with every change the API's rules would refuse listed as a
//! refusal instead. Nothing here writes.
//!
//! Only what the file declares is compared: roles, members and service accounts that exist
//! but are not declared are left alone, except that with `prune: true` those the reconciler
//! created itself are removed.

use std::collections::BTreeSet;

use serde::Serialize;
use uos_domain::{
    BudgetKey, BudgetScope, Email, InviteState, MembershipStatus, OrgId, OrgStatus, RoleName,
};
use uos_store::{DeclaredKind, MemberFilter, PageRequest, ReadTx, StoreError};
use utoipa::ToSchema;

use crate::declared::{DeclaredBudget, DeclaredOrg, DeclaredRole};
use crate::problem::Problem;
use crate::repo::OrgEntry;

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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = DeclaredOrgPlan)]
pub struct OrgPlan {
    pub file: String,
    pub org: String,
    pub changes: Vec<Change>,
    pub refusals: Vec<Refusal>,
}

/// One change, as the API would make it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(tag = "op", rename_all = "snake_case")]
#[schema(as = DeclaredChange)]
pub enum Change {
    /// A new org, founded by `owner`: the first declared owner who has an account.
    CreateOrg {
        display_name: String,
        owner: String,
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
        /// The role as it is now.
        from: LiveRole,
    },
    /// Pruned: a role the reconciler created that the file no longer declares.
    DeleteRole {
        name: String,
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
    /// Pruned: a member the reconciler added or invited that the file no longer declares
    /// (a pending invite is revoked).
    RemoveMember {
        email: String,
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
        /// The account's roles and description now.
        from_roles: Vec<String>,
        from_description: Option<String>,
    },
    /// Pruned: an account the reconciler created that the file no longer declares.
    DeleteServiceAccount {
        name: String,
    },
    SetBudget {
        from: Option<DeclaredBudget>,
        to: DeclaredBudget,
    },
}

/// A role's definition as it is in the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct LiveRole {
    pub permissions: Vec<String>,
    pub inherits: Vec<String>,
    pub description: Option<String>,
}

/// A declared change the API's rules refuse; applying the file leaves it undone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = DeclaredRefusal)]
pub struct Refusal {
    /// The field of the file, e.g. `members[0].roles`.
    pub field: String,
    pub reason: String,
}

/// The plans of a set of org files: each valid file's plan and each invalid file's problems.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[schema(as = DeclaredRepoPlan)]
pub struct RepoPlan {
    pub plans: Vec<OrgPlan>,
    pub invalid: Vec<InvalidFile>,
    /// True when applying would leave something undone: a file is invalid or a change would
    /// be refused.
    pub blocked: bool,
    /// The whole plan as people read it ([`OrgPlan::render`] of each plan, then each problem
    /// as `file:line:column: field: message`), e.g. for a pull-request comment.
    pub text: String,
}

/// An org file that cannot be planned, with every problem found in it.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[schema(as = DeclaredInvalidFile)]
pub struct InvalidFile {
    pub file: String,
    pub problems: Vec<Problem>,
}

/// The plan of every file in `entries` against the store as `r` reads it.
pub async fn plan_repo(r: &mut dyn ReadTx, entries: Vec<OrgEntry>) -> Result<RepoPlan, StoreError> {
    let mut plans = Vec::new();
    let mut invalid = Vec::new();
    for entry in entries {
        match entry.result {
            Ok(org) => plans.push(plan_org(r, &org).await?),
            Err(problems) => invalid.push(InvalidFile {
                file: entry.file,
                problems,
            }),
        }
    }
    let mut text: String = plans.iter().map(OrgPlan::render).collect();
    text.push_str(&problem_lines(&invalid));
    Ok(RepoPlan {
        blocked: !invalid.is_empty() || plans.iter().any(|p| !p.refusals.is_empty()),
        plans,
        invalid,
        text,
    })
}

/// Every problem of `invalid` as people read it: `file:line:column: field: message` lines.
pub fn problem_lines(invalid: &[InvalidFile]) -> String {
    let lines = invalid.iter().flat_map(|f| &f.problems);
    lines.map(|p| format!("{p}\n")).collect()
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
        new_org(r, declared, &mut plan).await?;
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
    for role in parents_first(&declared.roles) {
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
                        from: LiveRole {
                            permissions: permission_names(&live.permissions),
                            inherits: names(&live.inherits),
                            description: live.description.clone(),
                        },
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
                        from_roles: names(&live.roles),
                        from_description: live.description.clone(),
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
    if declared.prune {
        prune(r, org.id, declared, &mut plan).await?;
    }
    Ok(plan)
}

/// Everything a new org declares is created. An org always has an owner, so it is founded by
/// the first declared owner who has an account; without one, it cannot be created yet.
async fn new_org(
    r: &mut dyn ReadTx,
    declared: &DeclaredOrg,
    plan: &mut OrgPlan,
) -> Result<(), StoreError> {
    let mut known = Vec::with_capacity(declared.members.len());
    for m in &declared.members {
        known.push(r.get_user_by_email(&m.email).await?.is_some());
    }
    let founder = declared
        .members
        .iter()
        .zip(&known)
        .position(|(m, exists)| *exists && m.roles.iter().any(RoleName::is_owner));
    let Some(founder) = founder else {
        plan.refusals.push(Refusal {
            field: "members".to_owned(),
            reason: "a new org needs an owner who already has an account: declare one with \
                     the owner role"
                .to_owned(),
        });
        return Ok(());
    };
    let owner = &declared.members[founder];
    plan.changes.push(Change::CreateOrg {
        display_name: declared.display_name.clone(),
        owner: owner.email.to_string(),
    });
    for role in parents_first(&declared.roles) {
        plan.changes.push(Change::CreateRole {
            name: role.name.to_string(),
            permissions: permission_names(&role.permissions),
            inherits: names(&role.inherits),
            description: role.description.clone(),
        });
    }
    for (i, (m, exists)) in declared.members.iter().zip(&known).enumerate() {
        let email = m.email.to_string();
        let roles = names(&m.roles);
        plan.changes.push(if i == founder {
            // Founded as owner; any further roles are set once the roles exist.
            if roles == [RoleName::owner().to_string()] {
                continue;
            }
            Change::SetMemberRoles {
                email,
                from: vec![RoleName::owner().to_string()],
                to: roles,
            }
        } else if *exists {
            Change::AddMember { email, roles }
        } else {
            Change::Invite { email, roles }
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
    Ok(())
}

/// With `prune: true`, what the reconciler created and the file no longer declares goes:
/// members and accounts first, then roles (which they may hold).
async fn prune(
    r: &mut dyn ReadTx,
    org: OrgId,
    declared: &DeclaredOrg,
    plan: &mut OrgPlan,
) -> Result<(), StoreError> {
    let owned = r.declared_objects(org).await?;
    let mut roles = Vec::new();
    for (kind, name) in owned {
        match kind {
            DeclaredKind::Member => {
                if !declared.members.iter().any(|m| m.email.as_str() == name) {
                    plan.changes.push(Change::RemoveMember { email: name });
                }
            }
            DeclaredKind::ServiceAccount => {
                if !declared.service_accounts.iter().any(|a| a.name == name) {
                    plan.changes.push(Change::DeleteServiceAccount { name });
                }
            }
            DeclaredKind::Role => {
                if !declared.roles.iter().any(|d| d.name.as_str() == name) {
                    roles.push(Change::DeleteRole { name });
                }
            }
        }
    }
    plan.changes.extend(roles);
    Ok(())
}

/// Members by email: joins, invites and role changes, and the last owner kept.
async fn members(
    r: &mut dyn ReadTx,
    org: OrgId,
    declared: &DeclaredOrg,
    plan: &mut OrgPlan,
) -> Result<(), StoreError> {
    let filter = MemberFilter { org, status: None };
    // Each page carries its members' emails: one statement per page, no lookup of users.
    let live = all_pages!(|page| r.list_members(&filter, &page));
    let owners: Vec<&Email> = live
        .iter()
        .filter(|l| {
            l.membership.status == MembershipStatus::Active
                && l.membership.roles.iter().any(RoleName::is_owner)
        })
        .map(|l| &l.email)
        .collect();
    let now = uos_domain::now();
    let invites = all_pages!(|page| r.list_invites(org, &page));
    for (i, m) in declared.members.iter().enumerate() {
        let roles = names(&m.roles);
        let current = live.iter().find(|l| l.email == m.email);
        match current {
            Some(l) => {
                let from = names(&l.membership.roles);
                if sorted(&from) == sorted(&roles) {
                    continue;
                }
                let demoted = owners.contains(&&m.email) && !m.roles.iter().any(RoleName::is_owner);
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

/// The declared roles with every role after those it inherits, so each is created after its
/// parents (the file may list them in any order; it has no cycles, the parser checked).
fn parents_first(roles: &[DeclaredRole]) -> Vec<&DeclaredRole> {
    let mut out: Vec<&DeclaredRole> = Vec::with_capacity(roles.len());
    let mut left: Vec<&DeclaredRole> = roles.iter().collect();
    while !left.is_empty() {
        let before = left.len();
        left.retain(|role| {
            let ready = role.inherits.iter().all(|parent| {
                !roles.iter().any(|r| &r.name == parent) || out.iter().any(|r| &r.name == parent)
            });
            if ready {
                out.push(role);
            }
            !ready
        });
        if left.len() == before {
            // Only a cycle stops progress; keep the file's order for what is left.
            out.append(&mut left);
        }
    }
    out
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
    /// The plan as people read it: one line per change, `+` new, `~` changed, `-` pruned,
    /// `!` refused.
    pub fn render(&self) -> String {
        let mut out = format!("{} ({}):\n", self.file, self.org);
        if self.changes.is_empty() && self.refusals.is_empty() {
            out.push_str("  no changes\n");
        }
        let list = |v: &[String]| format!("[{}]", v.join(", "));
        for c in &self.changes {
            let line = match c {
                Change::CreateOrg {
                    display_name,
                    owner,
                } => format!("+ create org {display_name:?} founded by {owner}"),
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
                Change::RemoveMember { email } => format!("- member {email}"),
                Change::DeleteRole { name } => format!("- role {name}"),
                Change::DeleteServiceAccount { name } => format!("- service account {name:?}"),
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
