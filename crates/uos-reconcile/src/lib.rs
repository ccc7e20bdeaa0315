//! Declarative org configuration (contract § Declarative config): one YAML file per org in a
//! Git repository, `orgs/<slug>.yaml`, with the API's field names. This crate reads and checks
//! those files: the format ([`file`]), its JSON Schema, the checked values ([`declared`]) and
//! where each problem is ([`problem`]); fetching the repository ([`git`]) and checking its
//! commits' signatures ([`signature`]); the plan of each org ([`plan`]), the service steps
//! that apply it and the drift it shows ([`steps`]), and the reconcile pass ([`run`]) with
//! its metrics.

pub mod declared;
pub mod file;
pub mod git;
pub mod leader;
pub mod metrics;
pub mod plan;
pub mod problem;
pub mod repo;
pub mod run;
pub mod signature;
pub mod steps;

pub use declared::{
    parse_org, DeclaredAccount, DeclaredBudget, DeclaredMember, DeclaredOrg, DeclaredRole,
};
pub use file::json_schema;
pub use plan::{
    plan_org, plan_repo, problem_lines, Change, InvalidFile, OrgPlan, Refusal, RepoPlan,
};
pub use problem::Problem;
pub use repo::{read_files, read_repo, OrgEntry};
pub use run::{Engine, Outcome, Pass, Source};
