//! Developer tasks: `cargo xtask ci` (the whole test suite, as CI runs it) and
//! `cargo xtask bench` (seed + load benchmark against the release binary) and
//! `cargo xtask bench-identity` (login, refresh and introspection throughput) and
//! `cargo xtask bench-machine` (API keys and client credentials) and
//! `cargo xtask bench-audit` (audit appends, verification, relay) and
//! `cargo xtask bench-policy` (decisions and usage ingest) and
//! `cargo xtask bench-reconcile` (the reconciler with 20,000 declared orgs) and
//! `cargo xtask seed` (PostgreSQL at 1M users by COPY, and the plan check of every list query)
//! and `cargo xtask bench-scale` (admin reads at that scale) and
//! `cargo xtask bench-reads` (issue 19's hot paths, each as a share of `/healthz` in the same
//! run) and
//! `cargo xtask dr-drill` (backup under load, disaster, restore, verification) and
//! `cargo xtask api-fuzz` (schemathesis against the served OpenAPI) and
//! `cargo xtask manifests` (the Dockerfile, the Helm chart, the kustomize overlays and the
//! workflows, linted and validated offline).

mod api_fuzz;
mod bench;
mod bench_audit;
mod bench_identity;
mod bench_machine;
mod bench_policy;
mod bench_reads;
mod bench_reconcile;
mod bench_scale;
mod ci;
mod cpu;
mod dr_drill;
mod manifests;
mod plan_check;
mod release;
mod seed;
mod services;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "xtask", about = "user-org-service developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Format check, clippy, `manifests`, and every test including the PostgreSQL suites
    /// (starts PostgreSQL if it is not running; fails if it stays unreachable).
    Ci,
    /// schemathesis with every check against the release binary's `/openapi.json`, logged in
    /// as a platform admin, on a fresh SQLite data dir (also part of `ci`).
    ApiFuzz(api_fuzz::ApiFuzzArgs),
    /// hadolint, helm lint and template (dev and prod values), kustomize build of every
    /// overlay, every rendered object against the Kubernetes schemas and the prometheus-operator
    /// API, the chart against the prod overlay, and actionlint (also part of `ci`).
    Manifests,
    /// Seed users and measure list/invite latency with wrk against the release binary.
    Bench(bench::BenchArgs),
    /// Time argon2id and measure logins, refreshes and introspections per second with wrk
    /// against the release binary (PostgreSQL + Redis by default).
    BenchIdentity(bench_identity::IdentityBenchArgs),
    /// Audited writes into many orgs and into one, offline verification, the relay's
    /// throughput and commit-to-broker latency, against the release binaries (PostgreSQL).
    BenchAudit(bench_audit::AuditBenchArgs),
    /// Seed 500,000 API keys, then measure cached and cold key verification, introspection
    /// and client-credentials grants with wrk against the release binary (PostgreSQL + Redis).
    BenchMachine(bench_machine::MachineBenchArgs),
    /// Single and batched decisions of the decision point and batched usage ingest, each
    /// beside `GET /healthz`, against the release binary (PostgreSQL + Redis).
    BenchPolicy(bench_policy::PolicyBenchArgs),
    /// The reconciler at scale: the first apply and the plan of 20,000 declared orgs, and a
    /// one-org commit from push webhook to applied.
    BenchReconcile(bench_reconcile::ReconcileBenchArgs),
    /// Load a PostgreSQL database at production scale (1M users, 20k orgs, 2M memberships,
    /// 500k API keys, 1M audit events) with COPY, analyse it, and fail if any list query's
    /// plan at that scale scans or sorts a large table instead of walking an index.
    Seed(seed::SeedArgs),
    /// `seed`'s database and plan check, then a user by id, a members page, the org list
    /// (first and deep page) and the audit page with wrk against the release binary
    /// (PostgreSQL + Redis), each beside `GET /healthz`, and the server's RSS.
    BenchScale(bench_scale::ScaleBenchArgs),
    /// Issue 19's hot paths in one run against the release binary (PostgreSQL + Redis, 120k
    /// members in one org): a user, an org and a member by id, a members page, refresh,
    /// password login beside the argon2id hash rate, and cold API-key checks, each as a share
    /// of `GET /healthz` measured at the start and the end, beside the targets.
    BenchReads(bench_reads::ReadsBenchArgs),
    /// A disaster-recovery rehearsal: a backup under write load, the store and keys
    /// destroyed, a restore into a clean database, the audit trail verified; prints RPO and
    /// RTO.
    DrDrill(dr_drill::DrDrillArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Ci => ci::run(),
        Command::ApiFuzz(args) => api_fuzz::run(&args),
        Command::Manifests => manifests::run(),
        Command::Bench(args) => bench::run(args),
        Command::BenchIdentity(args) => bench_identity::run(args),
        Command::BenchMachine(args) => bench_machine::run(args),
        Command::BenchAudit(args) => bench_audit::run(args),
        Command::BenchPolicy(args) => bench_policy::run(args),
        Command::BenchReconcile(args) => bench_reconcile::run(args),
        Command::Seed(args) => seed::run(args),
        Command::BenchScale(args) => bench_scale::run(args),
        Command::BenchReads(args) => bench_reads::run(args),
        Command::DrDrill(args) => dr_drill::run(args),
    }
}
