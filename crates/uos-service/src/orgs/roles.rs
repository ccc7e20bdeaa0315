//! Custom org roles: permissions plus inheritance, validated as a whole graph (no cycles, no
//! unknown parents, no shadowing of built-ins) before anything is stored.

use crate::kernel::access::role_grants;
use crate::kernel::precondition::{check_version, Precondition};
use crate::kernel::reads::LazyRead;
use crate::kernel::uow::{snapshot, UnitOfWork};
use crate::kernel::views::RoleView;
use crate::orgs::members::MAX_ROLES;
use crate::{Ctx, Done, FieldError, Result, ServiceError, Services};
use std::collections::BTreeSet;
use uos_audit::AuditAction;
use uos_authz::{Action, Capability, Resource, ResourceKind};
use uos_domain::Org;
use uos_domain::{
    validate_role_graph, CustomRole, DomainError, OrgSlug, Permission, RoleId, RoleName,
};
use uos_store::ReadTx;
use uos_store::{Page, PageRequest};

/// Custom roles per org: generous, and keeps the graph check and policy inputs small.
const MAX_ROLES_PER_ORG: usize = 100;
pub const DESCRIPTION_MAX_CHARS: usize = 500;

#[derive(Clone, Debug)]
pub struct NewRole {
    pub name: RoleName,
    pub description: Option<String>,
    pub permissions: Vec<Permission>,
    pub inherits: Vec<RoleName>,
}

#[derive(Clone, Debug, Default)]
pub struct RolePatch {
    pub description: Option<String>,
    pub permissions: Option<Vec<Permission>>,
    pub inherits: Option<Vec<RoleName>>,
}

fn role_resource(name: &RoleName, grants: Vec<String>) -> impl FnOnce(&mut Resource) + '_ {
    move |r: &mut Resource| {
        r.kind = ResourceKind::Role;
        r.id = Some(name.to_string());
        r.grants_permissions = grants;
    }
}

/// What a role definition hands out: its own permissions and those of the roles it inherits.
/// Whoever defines a role must hold all of them, or a custom role would be a way to grant
/// oneself (or a service account) more than one has.
async fn definition_grants(
    tx: &mut dyn uos_store::Tx,
    org: uos_domain::OrgId,
    permissions: Option<&[Permission]>,
    inherits: Option<&[RoleName]>,
) -> Result<Vec<String>> {
    let mut grants = role_grants(tx, org, inherits.unwrap_or_default()).await?;
    grants.extend(
        permissions
            .unwrap_or_default()
            .iter()
            .map(|p| p.as_str().to_string()),
    );
    Ok(grants)
}

/// A role description is short free text without control characters. Public so the HTTP layer
/// can report a bad one together with the request's other bad fields.
pub fn is_valid_description(d: &str) -> bool {
    d.chars().count() <= DESCRIPTION_MAX_CHARS && !d.chars().any(char::is_control)
}

pub(crate) fn check_description(d: &Option<String>) -> Result<()> {
    match d {
        Some(d) if !is_valid_description(d) => Err(ServiceError::field(
            "description",
            "invalid",
            format!("at most {DESCRIPTION_MAX_CHARS} characters, no control characters"),
        )),
        _ => Ok(()),
    }
}

/// Graph problems are input errors on the `inherits` field.
fn graph_error(e: DomainError) -> ServiceError {
    ServiceError::Validation(vec![FieldError::from_domain(
        match e {
            DomainError::Invalid {
                code: "builtin_role",
                ..
            } => "name",
            _ => "inherits",
        },
        &e,
    )])
}

fn dedup<T: Ord + Clone>(v: Vec<T>) -> Vec<T> {
    let mut v = v;
    v.sort();
    v.dedup();
    v
}

/// Check that every role exists in the org (built-in or custom) and drop duplicates.
pub(crate) async fn validate_roles(
    tx: &mut dyn ReadTx,
    org: &Org,
    roles: Vec<RoleName>,
    field: &str,
) -> Result<Vec<RoleName>> {
    if roles.is_empty() || roles.len() > MAX_ROLES {
        return Err(ServiceError::field(
            field,
            "invalid_length",
            format!("give 1 to {MAX_ROLES} roles"),
        ));
    }
    let custom: BTreeSet<String> = if roles.iter().all(RoleName::is_builtin) {
        BTreeSet::new()
    } else {
        tx.all_roles(org.id)
            .await?
            .into_iter()
            .map(|r| r.name.to_string())
            .collect()
    };
    let mut errors = Vec::new();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, r) in roles.into_iter().enumerate() {
        if !r.is_builtin() && !custom.contains(r.as_str()) {
            errors.push(crate::FieldError::new(
                format!("{field}[{i}]"),
                "unknown_role",
                format!("no role named {r} in this organization"),
            ));
        } else if seen.insert(r.clone()) {
            out.push(r);
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ServiceError::Validation(errors))
    }
}

impl Services {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn create_role(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        req: NewRole,
    ) -> Result<Done<RoleView>> {
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        let (cap, done) = self.create_role_in(&mut uow, slug, req).await?;
        uow.commit(&cap, &done).await?;
        Ok(done)
    }

    pub(crate) async fn create_role_in(
        &self,
        uow: &mut UnitOfWork<'_>,
        slug: &OrgSlug,
        req: NewRole,
    ) -> Result<(Capability, Done<RoleView>)> {
        let ctx = uow.ctx();
        check_description(&req.description)?;
        let inner = &*self.inner;
        let org = uow
            .tx()
            .get_org_by_slug(slug)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let grants = definition_grants(
            uow.tx(),
            org.id,
            Some(&req.permissions),
            Some(&req.inherits),
        )
        .await?;
        let cap = inner
            .authorize_in_org(
                uow.tx(),
                ctx,
                &org,
                Action::RoleCreate,
                role_resource(&req.name, grants),
            )
            .await?;
        self.inner.refuse_if_declared(uow.tx(), ctx, org.id).await?;
        let mut all = uow.tx().all_roles(org.id).await?;
        if all.len() >= MAX_ROLES_PER_ORG {
            return Err(ServiceError::conflict(
                "too_many_roles",
                format!("an organization has at most {MAX_ROLES_PER_ORG} custom roles"),
            ));
        }
        let now = uos_domain::now();
        let role = CustomRole {
            id: RoleId::new(),
            org_id: org.id,
            name: req.name,
            description: req.description,
            permissions: dedup(req.permissions),
            inherits: dedup(req.inherits),
            created_at: now,
            updated_at: now,
            version: 1,
        };
        if all.iter().any(|r| r.name == role.name) {
            return Err(ServiceError::conflict(
                "role_exists",
                "a role with this name already exists",
            ));
        }
        all.push(role.clone());
        validate_role_graph(&all).map_err(graph_error)?;
        uow.tx().insert_role(&role).await?;
        uow.record(
            AuditAction::RoleCreated,
            Some(org.id),
            role.name.to_string(),
            serde_json::Value::Null,
            snapshot(&role),
        )
        .await?;
        let done = Done::created(RoleView::from(&role), Some(role.version));
        Ok((cap, done))
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn list_roles(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        page: &PageRequest,
    ) -> Result<Page<RoleView>> {
        let inner = &*self.inner;
        let mut r = LazyRead::new(&*inner.store);
        let (org, _cap) = inner
            .org_read_access(&mut r, ctx, slug, Action::RoleList, |_| {})
            .await?;
        let page = r.get().await?.list_roles(org.id, page).await?;
        Ok(Page {
            items: page.items.iter().map(RoleView::from).collect(),
            next: page.next,
        })
    }

    /// A custom role, or a built-in one (read-only) by its name.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn get_role(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        name: &RoleName,
    ) -> Result<Done<RoleView>> {
        let inner = &*self.inner;
        let mut r = LazyRead::new(&*inner.store);
        let (org, _cap) = inner
            .org_read_access(
                &mut r,
                ctx,
                slug,
                Action::RoleRead,
                role_resource(name, Vec::new()),
            )
            .await?;
        if let Some(view) = RoleView::builtin(name.as_str()) {
            return Ok(Done::ok(view, None));
        }
        let role = r
            .get()
            .await?
            .get_role(org.id, name)
            .await?
            .ok_or(ServiceError::NotFound)?;
        Ok(Done::ok(RoleView::from(&role), Some(role.version)))
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn update_role(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        name: &RoleName,
        patch: RolePatch,
        if_match: Precondition,
    ) -> Result<Done<RoleView>> {
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        let (cap, done) = self
            .update_role_in(&mut uow, slug, name, patch, if_match)
            .await?;
        uow.commit(&cap, &done).await?;
        Ok(done)
    }

    pub(crate) async fn update_role_in(
        &self,
        uow: &mut UnitOfWork<'_>,
        slug: &OrgSlug,
        name: &RoleName,
        patch: RolePatch,
        if_match: Precondition,
    ) -> Result<(Capability, Done<RoleView>)> {
        let ctx = uow.ctx();
        check_description(&patch.description)?;
        let inner = &*self.inner;
        let org = uow
            .tx()
            .get_org_by_slug(slug)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let grants = definition_grants(
            uow.tx(),
            org.id,
            patch.permissions.as_deref(),
            patch.inherits.as_deref(),
        )
        .await?;
        let cap = inner
            .authorize_in_org(
                uow.tx(),
                ctx,
                &org,
                Action::RoleUpdate,
                role_resource(name, grants),
            )
            .await?;
        self.inner.refuse_if_declared(uow.tx(), ctx, org.id).await?;
        if name.is_builtin() {
            return Err(ServiceError::conflict(
                "builtin_role",
                "built-in roles cannot be changed",
            ));
        }
        let mut all = uow.tx().all_roles(org.id).await?;
        let before = all
            .iter()
            .find(|r| &r.name == name)
            .cloned()
            .ok_or(ServiceError::NotFound)?;
        check_version(before.version, &if_match)?;
        let mut after = before.clone();
        if let Some(d) = patch.description {
            after.description = Some(d);
        }
        if let Some(p) = patch.permissions {
            after.permissions = dedup(p);
        }
        if let Some(i) = patch.inherits {
            after.inherits = dedup(i);
        }
        after.updated_at = uos_domain::now();
        after.version += 1;
        for r in all.iter_mut().filter(|r| &r.name == name) {
            *r = after.clone();
        }
        validate_role_graph(&all).map_err(graph_error)?;
        uow.tx().update_role(&after, before.version).await?;
        // Service accounts' expanded permissions are cached with their credentials.
        uow.invalidate(uos_shared::Invalidation::Org(org.id.0));
        uow.record(
            AuditAction::RoleUpdated,
            Some(org.id),
            name.to_string(),
            snapshot(&before),
            snapshot(&after),
        )
        .await?;
        let done = Done::ok(RoleView::from(&after), Some(after.version));
        Ok((cap, done))
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn delete_role(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        name: &RoleName,
        if_match: Precondition,
    ) -> Result<Done<()>> {
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        let (cap, done) = self.delete_role_in(&mut uow, slug, name, if_match).await?;
        uow.commit(&cap, &done).await?;
        Ok(done)
    }

    pub(crate) async fn delete_role_in(
        &self,
        uow: &mut UnitOfWork<'_>,
        slug: &OrgSlug,
        name: &RoleName,
        if_match: Precondition,
    ) -> Result<(Capability, Done<()>)> {
        let ctx = uow.ctx();
        let inner = &*self.inner;
        let (org, cap) = inner
            .org_access(
                uow.tx(),
                ctx,
                slug,
                Action::RoleDelete,
                role_resource(name, Vec::new()),
            )
            .await?;
        self.inner.refuse_if_declared(uow.tx(), ctx, org.id).await?;
        if name.is_builtin() {
            return Err(ServiceError::conflict(
                "builtin_role",
                "built-in roles cannot be deleted",
            ));
        }
        let all = uow.tx().all_roles(org.id).await?;
        let before = all
            .iter()
            .find(|r| &r.name == name)
            .cloned()
            .ok_or(ServiceError::NotFound)?;
        check_version(before.version, &if_match)?;
        if all.iter().any(|r| r.inherits.contains(name)) {
            return Err(ServiceError::conflict(
                "role_inherited",
                "another role inherits this role",
            ));
        }
        if uow.tx().count_members_with_role(org.id, name).await? > 0 {
            return Err(ServiceError::conflict(
                "role_in_use",
                "members still hold this role",
            ));
        }
        if uow
            .tx()
            .count_service_accounts_with_role(org.id, name)
            .await?
            > 0
        {
            return Err(ServiceError::conflict(
                "role_in_use",
                "service accounts still hold this role",
            ));
        }
        uow.tx().delete_role(org.id, name).await?;
        uow.record(
            AuditAction::RoleDeleted,
            Some(org.id),
            name.to_string(),
            snapshot(&before),
            serde_json::Value::Null,
        )
        .await?;
        let done = Done::no_content();
        Ok((cap, done))
    }
}
