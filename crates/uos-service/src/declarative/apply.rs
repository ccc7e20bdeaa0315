//! Applying one declared org: the steps its file asks for, made through the same use cases as
//! the API (so policy, validation, the last-owner rule and audit hold alike), all in one unit
//! of work: either every step and the new status commit, or nothing does.

use uos_authz::{Action, Capability};
use uos_domain::{BudgetKey, DisplayName, Email, InviteState, OrgSlug, RoleName};
use uos_mail::Mail;
use uos_store::{DeclaredAttempt, DeclaredKind, PageRequest, Tx};

use crate::kernel::precondition::Precondition;
use crate::kernel::uow::UnitOfWork;
use crate::orgs::lifecycle::found_org;
use crate::orgs::roles::{NewRole, RolePatch};
use crate::{
    BudgetTarget, Caller, Ctx, NewBudget, NewInvite, NewServiceAccount, Result,
    ServiceAccountPatch, ServiceError, Services,
};

/// One change the reconciler makes, in the use cases' terms.
#[derive(Clone, Debug)]
pub enum Step {
    /// A new org, founded by `owner` (an existing user the file declares as an owner).
    CreateOrg {
        display_name: DisplayName,
        owner: Email,
    },
    SetDisplayName(DisplayName),
    CreateRole(NewRole),
    /// The role becomes exactly this definition.
    UpdateRole(NewRole),
    DeleteRole(RoleName),
    /// An existing user joins.
    AddMember {
        email: Email,
        roles: Vec<RoleName>,
    },
    /// An unknown address is invited; the token is mailed to it once the apply commits.
    Invite {
        email: Email,
        roles: Vec<RoleName>,
    },
    SetMemberRoles {
        email: Email,
        roles: Vec<RoleName>,
    },
    /// The member leaves, or its pending invite is revoked.
    RemoveMember(Email),
    CreateServiceAccount {
        name: String,
        roles: Vec<RoleName>,
        description: Option<String>,
    },
    UpdateServiceAccount {
        name: String,
        roles: Vec<RoleName>,
        description: Option<String>,
    },
    DeleteServiceAccount(String),
    SetBudget(NewBudget),
}

/// Rows per page while looking an org's invites and accounts up by name.
const PAGE: u32 = 200;

impl Services {
    /// Apply `steps` to org `slug` as the reconciler (`ctx` from [`Ctx::reconciler`]) and
    /// record the attempt as applied with the file's `text`, in one unit of work. A step the
    /// use case refuses fails the whole apply and nothing of it stays.
    pub async fn apply_declared(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        steps: Vec<Step>,
        text: &str,
    ) -> Result<()> {
        let Caller::Reconciler(source) = &ctx.caller else {
            return Err(ServiceError::Forbidden {
                rule: "reconciler_required".into(),
            });
        };
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        let mut invites = Vec::new();
        let mut budgets = Vec::new();
        let mut caps = Vec::with_capacity(steps.len());
        for step in steps {
            caps.push(
                self.apply_step(&mut uow, slug, step, &mut invites, &mut budgets)
                    .await?,
            );
        }
        // Reading the org as the reconciler confines the unit of work to it and gives the
        // capability the commit needs, also when nothing changed.
        let (org, cap) = self
            .inner
            .org_access(uow.tx(), ctx, slug, Action::OrgRead, |_| {})
            .await?;
        // Every step was allowed for this org; the commit checks that once more for each.
        for step_cap in &caps {
            step_cap
                .ensure_covers_org(org.id.0)
                .map_err(|e| ServiceError::Internal(format!("commit refused: {e}")))?;
        }
        let tx = uow.tx();
        tx.note_declared_org(slug.as_str(), Some(org.id), &source.file)
            .await?;
        let attempt = DeclaredAttempt {
            revision: source.revision.clone(),
            at: uos_domain::now(),
            result: "applied".into(),
            error: None,
        };
        tx.record_declared_attempt(slug.as_str(), &attempt, Some(text))
            .await?;
        uow.commit_unanswered(&cap).await?;
        self.inner.budgets.forget(budgets);
        for mail in invites {
            let mailer = self.inner.mailer.clone();
            if let Err(e) = mailer.send(&mail).await {
                tracing::error!(error = %e, "could not send a declared member's invite");
            }
        }
        Ok(())
    }

    async fn apply_step(
        &self,
        uow: &mut UnitOfWork<'_>,
        slug: &OrgSlug,
        step: Step,
        invites: &mut Vec<Mail>,
        budgets: &mut Vec<BudgetKey>,
    ) -> Result<Capability> {
        let now = uos_domain::now();
        let cap = match step {
            Step::CreateOrg {
                display_name,
                owner,
            } => {
                let ctx = uow.ctx();
                let cap = self.inner.authorize(
                    ctx,
                    Action::OrgCreate,
                    uos_authz::Resource {
                        kind: uos_authz::ResourceKind::Org,
                        ..Default::default()
                    },
                )?;
                let user = user_by_email(uow.tx(), &owner).await?;
                let org = found_org(uow, slug.clone(), display_name, &user).await?;
                uow.tx()
                    .add_declared_object(org.id, DeclaredKind::Member, owner.as_str(), now)
                    .await?;
                cap
            }
            Step::SetDisplayName(name) => {
                self.update_org_in(uow, slug, Some(name), None, Precondition::None)
                    .await?
                    .0
            }
            Step::CreateRole(role) => {
                let name = role.name.clone();
                let (cap, _) = self.create_role_in(uow, slug, role).await?;
                own(uow, slug, DeclaredKind::Role, name.as_str(), now).await?;
                cap
            }
            Step::UpdateRole(role) => {
                let patch = RolePatch {
                    description: role.description,
                    permissions: Some(role.permissions),
                    inherits: Some(role.inherits),
                };
                self.update_role_in(uow, slug, &role.name, patch, Precondition::None)
                    .await?
                    .0
            }
            Step::DeleteRole(name) => {
                let (cap, _) = self
                    .delete_role_in(uow, slug, &name, Precondition::None)
                    .await?;
                disown(uow, slug, DeclaredKind::Role, name.as_str()).await?;
                cap
            }
            Step::AddMember { email, roles } => {
                let user = user_by_email(uow.tx(), &email).await?;
                let cap = self.add_member_in(uow, slug, user.id, roles).await?;
                own(uow, slug, DeclaredKind::Member, email.as_str(), now).await?;
                cap
            }
            Step::Invite { email, roles } => {
                let req = NewInvite {
                    email: email.clone(),
                    roles,
                    expires_in_hours: None,
                };
                let (cap, done) = self.create_invite_in(uow, slug, req).await?;
                if let Some(token) = done.body.and_then(|v| v.token) {
                    invites.push(invite_mail(&email, slug, &token));
                }
                own(uow, slug, DeclaredKind::Member, email.as_str(), now).await?;
                cap
            }
            Step::SetMemberRoles { email, roles } => {
                let user = user_by_email(uow.tx(), &email).await?;
                self.set_member_roles_in(uow, slug, user.id, roles, Precondition::None)
                    .await?
                    .0
            }
            Step::RemoveMember(email) => {
                let cap = self.remove_declared_member(uow, slug, &email).await?;
                disown(uow, slug, DeclaredKind::Member, email.as_str()).await?;
                cap
            }
            Step::CreateServiceAccount {
                name,
                roles,
                description,
            } => {
                let req = NewServiceAccount {
                    name: name.clone(),
                    description,
                    roles,
                    rotation: Default::default(),
                };
                let (cap, _) = self.create_service_account_in(uow, slug, req).await?;
                own(uow, slug, DeclaredKind::ServiceAccount, &name, now).await?;
                cap
            }
            Step::UpdateServiceAccount {
                name,
                roles,
                description,
            } => {
                let id = account_by_name(uow.tx(), slug, &name).await?;
                let patch = ServiceAccountPatch {
                    description: Some(description),
                    roles: Some(roles),
                    ..Default::default()
                };
                self.update_service_account_in(uow, slug, id, patch, Precondition::None)
                    .await?
                    .0
            }
            Step::DeleteServiceAccount(name) => {
                let id = account_by_name(uow.tx(), slug, &name).await?;
                let (cap, _) = self
                    .delete_service_account_in(uow, slug, id, Precondition::None)
                    .await?;
                disown(uow, slug, DeclaredKind::ServiceAccount, &name).await?;
                cap
            }
            Step::SetBudget(budget) => {
                let (cap, _, key) = self
                    .put_budget_in(uow, slug, BudgetTarget::Org, budget, Precondition::None)
                    .await?;
                budgets.push(key);
                cap
            }
        };
        Ok(cap)
    }

    /// A pruned member leaves; one that never accepted its invite has the invite revoked.
    async fn remove_declared_member(
        &self,
        uow: &mut UnitOfWork<'_>,
        slug: &OrgSlug,
        email: &Email,
    ) -> Result<Capability> {
        if let Some(user) = uow.tx().get_user_by_email(email).await? {
            let org = org_by_slug(uow.tx(), slug).await?;
            if uow.tx().get_membership(org.id, user.id).await?.is_some() {
                let (cap, _) = self
                    .remove_member_in(uow, slug, user.id, Precondition::None)
                    .await?;
                return Ok(cap);
            }
        }
        let org = org_by_slug(uow.tx(), slug).await?;
        let now = uos_domain::now();
        let mut page = PageRequest::first(PAGE);
        loop {
            let got = uow.tx().list_invites(org.id, &page).await?;
            if let Some(invite) = got
                .items
                .iter()
                .find(|i| &i.email == email && i.state(now) == InviteState::Pending)
            {
                let (cap, _) = self
                    .revoke_invite_in(uow, slug, invite.id, Precondition::None)
                    .await?;
                return Ok(cap);
            }
            match got.next {
                Some(after) => page.after = Some(after),
                None => break,
            }
        }
        // Neither joined nor invited any more: only the record of it is left to drop.
        let ctx = uow.ctx();
        let (_, cap) = self
            .inner
            .org_access(uow.tx(), ctx, slug, Action::MemberRemove, |_| {})
            .await?;
        Ok(cap)
    }
}

async fn org_by_slug(tx: &mut dyn Tx, slug: &OrgSlug) -> Result<uos_domain::Org> {
    tx.get_org_by_slug(slug)
        .await?
        .ok_or(ServiceError::NotFound)
}

async fn user_by_email(tx: &mut dyn Tx, email: &Email) -> Result<uos_domain::User> {
    tx.get_user_by_email(email).await?.ok_or_else(|| {
        ServiceError::conflict(
            "unknown_user",
            format!("no account has the address {email}"),
        )
    })
}

/// The live service account of `slug` called `name`.
async fn account_by_name(
    tx: &mut dyn Tx,
    slug: &OrgSlug,
    name: &str,
) -> Result<uos_domain::ServiceAccountId> {
    let org = org_by_slug(tx, slug).await?;
    let mut page = PageRequest::first(PAGE);
    loop {
        let got = tx.list_service_accounts(org.id, false, &page).await?;
        if let Some(sa) = got.items.iter().find(|sa| sa.name == name) {
            return Ok(sa.id);
        }
        match got.next {
            Some(after) => page.after = Some(after),
            None => return Err(ServiceError::NotFound),
        }
    }
}

/// Record that the reconciler created `name` in `slug`, so pruning may remove it.
async fn own(
    uow: &mut UnitOfWork<'_>,
    slug: &OrgSlug,
    kind: DeclaredKind,
    name: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    let org = org_by_slug(uow.tx(), slug).await?;
    uow.tx().add_declared_object(org.id, kind, name, at).await?;
    Ok(())
}

async fn disown(
    uow: &mut UnitOfWork<'_>,
    slug: &OrgSlug,
    kind: DeclaredKind,
    name: &str,
) -> Result<()> {
    let org = org_by_slug(uow.tx(), slug).await?;
    uow.tx().remove_declared_object(org.id, kind, name).await?;
    Ok(())
}

fn invite_mail(email: &Email, slug: &OrgSlug, token: &str) -> Mail {
    Mail {
        to: email.to_string(),
        subject: format!("You are invited to {slug}"),
        text: format!(
            "You have been invited to the organization {slug}. Accept with this token \
             (POST /v1/invites/accept with {{\"token\": \"...\"}}):\n\n{token}\n"
        ),
    }
}
