//! Invite use cases: invite an email into an org with roles, list, revoke, and accept (which
//! creates the account if the email is new, or joins the existing one).

use crate::kernel::access::role_grants;
use crate::kernel::precondition::{check_version, Precondition};
use crate::kernel::reads::LazyRead;
use crate::kernel::uow::{snapshot, UnitOfWork};
use crate::kernel::views::{AcceptedInviteView, InviteView, MemberView, UserView};
use crate::orgs::roles::validate_roles;
use crate::{Ctx, Done, GoneReason, Result, ServiceError, Services};
use chrono::Duration;
use uos_audit::AuditAction;
use uos_authz::{Action, Capability, Resource, ResourceKind};
use uos_domain::invite::{INVITE_DEFAULT_HOURS, INVITE_MAX_HOURS, INVITE_MIN_HOURS};
use uos_domain::{
    DisplayName, Email, Invite, InviteId, InviteState, Membership, OrgSlug, RoleName, User,
    UserStatus,
};
use uos_store::{Page, PageRequest};

#[derive(Clone, Debug)]
pub struct NewInvite {
    pub email: Email,
    pub roles: Vec<RoleName>,
    pub expires_in_hours: Option<i64>,
}

fn invite_resource(
    id: Option<InviteId>,
    grants_owner: bool,
    grants: Vec<String>,
) -> impl FnOnce(&mut Resource) {
    move |r: &mut Resource| {
        r.kind = ResourceKind::Invite;
        r.id = id.map(|i| i.to_string());
        r.grants_owner = grants_owner;
        r.grants_permissions = grants;
    }
}

impl Services {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn create_invite(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        req: NewInvite,
    ) -> Result<Done<InviteView>> {
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        let (cap, done) = self.create_invite_in(&mut uow, slug, req).await?;
        uow.commit(&cap, &done).await?;
        Ok(done)
    }

    pub(crate) async fn create_invite_in(
        &self,
        uow: &mut UnitOfWork<'_>,
        slug: &OrgSlug,
        req: NewInvite,
    ) -> Result<(Capability, Done<InviteView>)> {
        let ctx = uow.ctx();
        let inner = &*self.inner;
        let hours = req.expires_in_hours.unwrap_or(INVITE_DEFAULT_HOURS);
        if !(INVITE_MIN_HOURS..=INVITE_MAX_HOURS).contains(&hours) {
            return Err(ServiceError::field(
                "expires_in_hours",
                "out_of_range",
                format!("must be between {INVITE_MIN_HOURS} and {INVITE_MAX_HOURS}"),
            ));
        }
        let grants_owner = req.roles.iter().any(RoleName::is_owner);
        let org = uow
            .tx()
            .get_org_by_slug(slug)
            .await?
            .ok_or(ServiceError::NotFound)?;
        // Nobody invites into permissions they do not hold themselves.
        let grants = role_grants(uow.tx(), org.id, &req.roles).await?;
        let cap = inner
            .authorize_in_org(
                uow.tx(),
                ctx,
                &org,
                Action::InviteCreate,
                invite_resource(None, grants_owner, grants),
            )
            .await?;
        let roles = validate_roles(uow.tx(), &org, req.roles, "roles").await?;
        if let Some(existing) = uow.tx().get_user_by_email(&req.email).await? {
            if uow
                .tx()
                .get_membership(org.id, existing.id)
                .await?
                .is_some()
            {
                return Err(ServiceError::conflict(
                    "already_member",
                    "this email already belongs to a member",
                ));
            }
        }
        let now = uos_domain::now();
        let token = uos_authn::random_token("uosinv_", 32);
        let invite = Invite {
            id: InviteId::new(),
            org_id: org.id,
            email: req.email,
            roles,
            token_hash: uos_authn::hash_token(&token),
            expires_at: now + Duration::hours(hours),
            created_by: ctx.caller.user().map(|u| u.user.id),
            created_at: now,
            accepted_at: None,
            revoked_at: None,
            version: 1,
        };
        uow.tx().insert_invite(&invite).await?;
        uow.record(
            AuditAction::InviteCreated,
            Some(org.id),
            invite.id.to_string(),
            serde_json::Value::Null,
            snapshot(&invite),
        )
        .await?;
        let done = Done::created(
            InviteView::new(&invite, now, Some(token)),
            Some(invite.version),
        );
        Ok((cap, done))
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn list_invites(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        page: &PageRequest,
    ) -> Result<Page<InviteView>> {
        let inner = &*self.inner;
        let mut r = LazyRead::new(&*inner.store);
        let (org, _cap) = inner
            .org_read_access(
                &mut r,
                ctx,
                slug,
                Action::InviteList,
                invite_resource(None, false, Vec::new()),
            )
            .await?;
        let now = uos_domain::now();
        let page = r.get().await?.list_invites(org.id, page).await?;
        Ok(Page {
            items: page
                .items
                .iter()
                .map(|i| InviteView::new(i, now, None))
                .collect(),
            next: page.next,
        })
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn revoke_invite(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        id: InviteId,
        if_match: Precondition,
    ) -> Result<Done<InviteView>> {
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        let (cap, done) = self.revoke_invite_in(&mut uow, slug, id, if_match).await?;
        uow.commit(&cap, &done).await?;
        Ok(done)
    }

    pub(crate) async fn revoke_invite_in(
        &self,
        uow: &mut UnitOfWork<'_>,
        slug: &OrgSlug,
        id: InviteId,
        if_match: Precondition,
    ) -> Result<(Capability, Done<InviteView>)> {
        let ctx = uow.ctx();
        let inner = &*self.inner;
        let (org, cap) = inner
            .org_access(
                uow.tx(),
                ctx,
                slug,
                Action::InviteRevoke,
                invite_resource(Some(id), false, Vec::new()),
            )
            .await?;
        let before = uow
            .tx()
            .get_invite(org.id, id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        check_version(before.version, &if_match)?;
        let now = uos_domain::now();
        match before.state(now) {
            InviteState::Pending | InviteState::Expired => {}
            InviteState::Accepted => {
                return Err(ServiceError::conflict(
                    "invite_accepted",
                    "the invite was already accepted",
                ))
            }
            InviteState::Revoked => {
                return Err(ServiceError::conflict(
                    "invite_revoked",
                    "the invite is already revoked",
                ))
            }
        }
        let mut after = before.clone();
        after.revoked_at = Some(now);
        after.version += 1;
        uow.tx().update_invite(&after, before.version).await?;
        uow.record(
            AuditAction::InviteRevoked,
            Some(org.id),
            id.to_string(),
            snapshot(&before),
            snapshot(&after),
        )
        .await?;
        let done = Done::ok(InviteView::new(&after, now, None), Some(after.version));
        Ok((cap, done))
    }

    /// Accept an invite by its token. The token is the credential, so the caller may be
    /// anonymous; a new email gets an account (active: the token proved the address).
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn accept_invite(
        &self,
        ctx: &Ctx,
        token: &str,
        display_name: Option<DisplayName>,
        password: Option<String>,
    ) -> Result<Done<AcceptedInviteView>> {
        let inner = &*self.inner;
        let cap = inner.authorize(
            ctx,
            Action::InviteAccept,
            Resource {
                kind: ResourceKind::Invite,
                ..Default::default()
            },
        )?;
        let token_hash = uos_authn::hash_token(token);
        // Hash the password (slow, off the runtime) before the write transaction, and only
        // when the invite is for a new account.
        let mut r = inner.store.read().await?;
        let probe = r
            .get_invite_by_token_hash(&token_hash)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let is_new = r.get_user_by_email(&probe.email).await?.is_none();
        drop(r);
        let password_hash = match (is_new, password) {
            (true, Some(pw)) => {
                let mut inputs = vec![probe.email.as_str()];
                if let Some(n) = display_name.as_ref() {
                    inputs.push(n.as_str());
                }
                self.check_password_policy(&pw, "password", &inputs)?;
                Some(self.hash_password(pw).await?)
            }
            (true, None) => {
                return Err(ServiceError::field(
                    "password",
                    "required",
                    "a new account needs a password",
                ))
            }
            (false, _) => None,
        };

        let mut uow = UnitOfWork::begin(inner, ctx).await?;
        let before = uow
            .tx()
            .get_invite_by_token_hash(&token_hash)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let now = uos_domain::now();
        match before.state(now) {
            InviteState::Pending => {}
            InviteState::Expired => {
                return Err(ServiceError::Gone {
                    code: GoneReason::InviteExpired,
                    detail: "the invite has expired".into(),
                })
            }
            InviteState::Revoked => {
                return Err(ServiceError::Gone {
                    code: GoneReason::InviteRevoked,
                    detail: "the invite was revoked".into(),
                })
            }
            InviteState::Accepted => {
                return Err(ServiceError::conflict(
                    "invite_accepted",
                    "the invite was already accepted",
                ))
            }
        }
        let org = uow
            .tx()
            .get_org(before.org_id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        if org.status != uos_domain::OrgStatus::Active {
            return Err(ServiceError::conflict(
                "org_inactive",
                "the organization is not active",
            ));
        }
        let user = match uow.tx().get_user_by_email(&before.email).await? {
            Some(u) if u.status.may_log_in() || u.status == UserStatus::PendingVerification => u,
            Some(_) => {
                return Err(ServiceError::conflict(
                    "account_unavailable",
                    "the account for this email cannot join organizations",
                ))
            }
            None => {
                let mut u = User::new(before.email.clone(), UserStatus::Active, now);
                u.display_name = display_name.map(DisplayName::into_string);
                u.password_hash = password_hash;
                if u.password_hash.is_none() {
                    // The account appeared between the probe and this transaction.
                    return Err(ServiceError::conflict(
                        "email_taken",
                        "retry: the account state changed",
                    ));
                }
                uow.create_user(&u).await?;
                u
            }
        };
        let m = Membership::new(org.id, user.id, before.roles.clone(), now);
        let mut after = before.clone();
        after.accepted_at = Some(now);
        after.version += 1;
        uow.tx().update_invite(&after, before.version).await?;
        uow.record(
            AuditAction::InviteAccepted,
            Some(org.id),
            after.id.to_string(),
            snapshot(&before),
            snapshot(&after),
        )
        .await?;
        uow.add_member(&m).await?;
        let view = AcceptedInviteView {
            user: UserView::from(&user),
            membership: MemberView::new(&m, &user),
        };
        let done = Done::ok(view, Some(m.version));
        uow.commit(&cap, &done).await?;
        Ok(done)
    }
}
