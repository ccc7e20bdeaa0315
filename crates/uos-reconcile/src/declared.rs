//! An org file checked whole: the values the API would accept, under the same rules (the
//! domain's parsers and the use cases' limits), or every problem of the file at once, each at
//! its line and column.

use std::collections::{BTreeMap, BTreeSet};

use chrono::DateTime;
use marked_yaml::Spanned;
use serde::Serialize;
use uos_domain::org::parse_display_name;
use uos_domain::role::validate_role_graph;
use uos_domain::{
    BudgetSettings, CustomRole, DomainError, Email, OrgId, OrgSlug, Period, Permission, RoleId,
    RoleName,
};

use crate::file::{OrgFile, RoleEntry, VERSION};
use crate::problem::Problem;

/// An org as its file declares it, every value valid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeclaredOrg {
    /// The file's path in the repository, e.g. `orgs/acme.yaml`.
    pub file: String,
    pub slug: OrgSlug,
    pub display_name: String,
    pub roles: Vec<DeclaredRole>,
    pub members: Vec<DeclaredMember>,
    pub service_accounts: Vec<DeclaredAccount>,
    pub budget: Option<DeclaredBudget>,
    pub prune: bool,
    pub heal: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeclaredRole {
    pub name: RoleName,
    pub description: Option<String>,
    pub inherits: Vec<RoleName>,
    pub permissions: Vec<Permission>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeclaredMember {
    pub email: Email,
    pub roles: Vec<RoleName>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeclaredAccount {
    pub name: String,
    pub roles: Vec<RoleName>,
    pub description: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DeclaredBudget {
    pub period: &'static str,
    pub limit_cents: i64,
    pub warn_percent: i32,
    pub block_percent: i32,
}

/// Parses and checks the org file at `file` (its path in the repository) with contents
/// `text`. Every problem is reported, not only the first.
pub fn parse_org(file: &str, text: &str) -> Result<DeclaredOrg, Vec<Problem>> {
    let raw: OrgFile = marked_yaml::from_yaml(0, text).map_err(|e| vec![yaml_problem(file, &e)])?;
    Check::new(file).org(raw)
}

/// A YAML or shape error (not a mapping, an unknown or missing field, a wrong type).
fn yaml_problem(file: &str, e: &marked_yaml::FromYamlError) -> Problem {
    use marked_yaml::{FromYamlError, LoadError};
    match e {
        FromYamlError::ParseYaml(load) => {
            let marker = match load {
                LoadError::TopLevelMustBeMapping(m)
                | LoadError::TopLevelMustBeSequence(m)
                | LoadError::UnexpectedAnchor(m)
                | LoadError::MappingKeyMustBeScalar(m)
                | LoadError::UnexpectedTag(m)
                | LoadError::ScanError(m, _) => Some(*m),
                LoadError::DuplicateKey(inner) => inner.key.span().start().copied(),
            };
            // The loader's message starts with the position again; keep what follows it.
            let text = load.to_string();
            let message = text
                .split_once(": ")
                .filter(|(head, _)| head.contains(':'))
                .map_or(text.as_str(), |(_, rest)| rest)
                .to_owned();
            Problem::at(file, marker.as_ref(), "", message)
        }
        FromYamlError::FromNode(node) => Problem::at(
            file,
            node.start_mark().as_ref(),
            node.path().unwrap_or_default(),
            node.to_string()
                .split_once(": ")
                .filter(|_| node.path().is_some())
                .map_or_else(|| node.to_string(), |(_, m)| m.to_owned()),
        ),
    }
}

/// Collects problems while it turns the raw file into values.
struct Check<'a> {
    file: &'a str,
    problems: Vec<Problem>,
}

impl<'a> Check<'a> {
    fn new(file: &'a str) -> Self {
        Self {
            file,
            problems: Vec::new(),
        }
    }

    fn problem<T>(
        &mut self,
        at: &Spanned<T>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.problems
            .push(Problem::spanned(self.file, at.span(), field, message));
    }

    /// `parse` of `value`, or its error recorded against `field`.
    fn parse<T, V>(
        &mut self,
        value: &Spanned<T>,
        field: impl Into<String>,
        parse: impl FnOnce(&T) -> Result<V, DomainError>,
    ) -> Option<V> {
        match parse(value) {
            Ok(v) => Some(v),
            Err(e) => {
                self.problem(value, field, e.to_string());
                None
            }
        }
    }

    fn org(mut self, raw: OrgFile) -> Result<DeclaredOrg, Vec<Problem>> {
        if *raw.version != VERSION {
            self.problem(&raw.version, "version", format!("must be {VERSION}"));
        }
        let slug = self.parse(&raw.slug, "slug", |s| OrgSlug::parse(s));
        if let Some(slug) = &slug {
            let expected = format!("orgs/{slug}.yaml");
            if !self.file.ends_with(&expected) {
                self.problem(
                    &raw.slug,
                    "slug",
                    format!("the file of org {slug} must be {expected}"),
                );
            }
        }
        let display_name = self.parse(&raw.display_name, "display_name", |s| parse_display_name(s));
        let roles = self.roles(&raw.roles);
        let known: BTreeSet<String> = roles.iter().map(|r| r.name.to_string()).collect();
        let members = self.members(&raw, &known);
        let service_accounts = self.accounts(&raw, &known);
        let budget = raw.budget.as_ref().and_then(|b| self.budget(b));
        let flag = |f: &Option<Spanned<bool>>| f.as_ref().is_some_and(|b| **b);
        match (slug, display_name) {
            (Some(slug), Some(display_name)) if self.problems.is_empty() => Ok(DeclaredOrg {
                file: self.file.to_owned(),
                slug,
                display_name,
                roles,
                members,
                service_accounts,
                budget,
                prune: flag(&raw.prune),
                heal: flag(&raw.heal),
            }),
            _ => Err(self.problems),
        }
    }

    fn roles(&mut self, raw: &[RoleEntry]) -> Vec<DeclaredRole> {
        let mut out = Vec::new();
        let mut seen = BTreeMap::new();
        for (i, r) in raw.iter().enumerate() {
            let at = |f: &str| format!("roles[{i}].{f}");
            let name = self.parse(&r.name, at("name"), |s| RoleName::parse(s));
            if let Some(name) = &name {
                if name.is_builtin() {
                    self.problem(&r.name, at("name"), format!("{name} is a built-in role"));
                } else if seen.insert(name.to_string(), i).is_some() {
                    self.problem(
                        &r.name,
                        at("name"),
                        format!("role {name} is declared twice"),
                    );
                }
            }
            let description = self.description(r.description.as_ref(), at("description"));
            let permissions: Vec<Permission> = r
                .permissions
                .iter()
                .enumerate()
                .filter_map(|(j, p)| {
                    self.parse(p, format!("roles[{i}].permissions[{j}]"), |s| {
                        Permission::parse(s)
                    })
                })
                .collect();
            let inherits: Vec<RoleName> = r
                .inherits
                .iter()
                .enumerate()
                .filter_map(|(j, p)| {
                    self.parse(p, format!("roles[{i}].inherits[{j}]"), |s| {
                        RoleName::parse(s)
                    })
                })
                .collect();
            if let Some(name) = name {
                out.push(DeclaredRole {
                    name,
                    description,
                    inherits,
                    permissions,
                });
            }
        }
        // Inheritance: every parent exists, and no role reaches itself.
        for (i, r) in raw.iter().enumerate() {
            for (j, parent) in r.inherits.iter().enumerate() {
                let known = RoleName::parse(parent)
                    .is_ok_and(|p| p.is_builtin() || seen.contains_key(p.as_str()));
                if RoleName::parse(parent).is_ok() && !known {
                    self.problem(
                        parent,
                        format!("roles[{i}].inherits[{j}]"),
                        format!("no role {} is built in or declared here", &**parent),
                    );
                }
            }
        }
        if let Err(DomainError::RoleCycle { role }) = validate_role_graph(&as_custom(&out)) {
            if let Some(&i) = seen.get(&role) {
                self.problem(
                    &raw[i].name,
                    format!("roles[{i}].inherits"),
                    format!("role inheritance cycle through {role}"),
                );
            }
        }
        out
    }

    /// Each of `roles` at `field[j]`, checked to be built in or in `known`; at least one.
    fn role_refs(
        &mut self,
        roles: &[Spanned<String>],
        field: &str,
        owner: &Spanned<String>,
        known: &BTreeSet<String>,
    ) -> Vec<RoleName> {
        if roles.is_empty() {
            self.problem(owner, field, "give at least one role");
        }
        let mut out = Vec::new();
        for (j, r) in roles.iter().enumerate() {
            let Some(name) = self.parse(r, format!("{field}[{j}]"), |s| RoleName::parse(s)) else {
                continue;
            };
            if !name.is_builtin() && !known.contains(name.as_str()) {
                self.problem(
                    r,
                    format!("{field}[{j}]"),
                    format!("no role {name} is built in or declared here"),
                );
            } else if !out.contains(&name) {
                out.push(name);
            }
        }
        out
    }

    fn members(&mut self, raw: &OrgFile, known: &BTreeSet<String>) -> Vec<DeclaredMember> {
        let mut out: Vec<DeclaredMember> = Vec::new();
        for (i, m) in raw.members.iter().enumerate() {
            let email = self.parse(&m.email, format!("members[{i}].email"), |s| Email::parse(s));
            let roles = self.role_refs(&m.roles, &format!("members[{i}].roles"), &m.email, known);
            let Some(email) = email else { continue };
            if out.iter().any(|o| o.email == email) {
                self.problem(
                    &m.email,
                    format!("members[{i}].email"),
                    format!("{email} is declared twice"),
                );
                continue;
            }
            out.push(DeclaredMember { email, roles });
        }
        out
    }

    fn accounts(&mut self, raw: &OrgFile, known: &BTreeSet<String>) -> Vec<DeclaredAccount> {
        let mut out: Vec<DeclaredAccount> = Vec::new();
        for (i, a) in raw.service_accounts.iter().enumerate() {
            let at = |f: &str| format!("service_accounts[{i}].{f}");
            let name = self.parse(&a.name, at("name"), |s| parse_display_name(s));
            let roles = self.role_refs(&a.roles, &at("roles"), &a.name, known);
            let description = self.description(a.description.as_ref(), at("description"));
            let Some(name) = name else { continue };
            if out.iter().any(|o| o.name == name) {
                self.problem(&a.name, at("name"), format!("{name} is declared twice"));
                continue;
            }
            out.push(DeclaredAccount {
                name,
                roles,
                description,
            });
        }
        out
    }

    fn description(&mut self, raw: Option<&Spanned<String>>, field: String) -> Option<String> {
        let d = raw?;
        if uos_service::is_valid_description(d) {
            Some((**d).clone())
        } else {
            self.problem(
                d,
                field,
                format!(
                    "at most {} characters, no control characters",
                    uos_service::DESCRIPTION_MAX_CHARS
                ),
            );
            None
        }
    }

    fn budget(&mut self, raw: &crate::file::BudgetEntry) -> Option<DeclaredBudget> {
        let period = self.parse(&raw.period, "budget.period", |s| Period::parse(s));
        let checked = BudgetSettings::check(
            period.unwrap_or(Period::Monthly),
            *raw.limit_cents,
            raw.warn_percent.as_deref().copied(),
            raw.block_percent.as_deref().copied(),
        );
        match checked {
            Ok(s) => period.map(|p| DeclaredBudget {
                period: p.as_str(),
                limit_cents: s.limit_cents,
                warn_percent: s.warn_percent,
                block_percent: s.block_percent,
            }),
            Err(bad) => {
                for (field, message) in bad {
                    let span = match field {
                        "warn_percent" => raw.warn_percent.as_ref().map(Spanned::span),
                        "block_percent" => raw.block_percent.as_ref().map(Spanned::span),
                        _ => None,
                    }
                    .unwrap_or(raw.limit_cents.span());
                    self.problems.push(Problem::spanned(
                        self.file,
                        span,
                        format!("budget.{field}"),
                        message,
                    ));
                }
                None
            }
        }
    }
}

/// The declared roles in the shape the domain's graph check takes (ids and times do not
/// matter to it).
fn as_custom(roles: &[DeclaredRole]) -> Vec<CustomRole> {
    roles
        .iter()
        .map(|r| CustomRole {
            id: RoleId(uuid::Uuid::nil()),
            org_id: OrgId(uuid::Uuid::nil()),
            name: r.name.clone(),
            description: None,
            permissions: r.permissions.clone(),
            inherits: r.inherits.clone(),
            created_at: DateTime::UNIX_EPOCH,
            updated_at: DateTime::UNIX_EPOCH,
            version: 0,
        })
        .collect()
}
