//! `cargo xtask bench-reconcile`: the reconciler at scale, release binaries, PostgreSQL by
//! default, a real Git repository of `--orgs` org files (each: a role, the owner, an invited
//! member, a service account and a budget):
//!
//! 1. the first apply of every org in one pass (`reconciler --once`): time, orgs/s and the
//!    process's peak RSS;
//! 2. the plan of every org against the store that now holds them (`uosctl declarative plan`):
//!    time and peak RSS (the issue's target: under 30 s for 20,000 orgs on 2 cores);
//! 3. the running leader after a one-org commit: the time from the push webhook's arrival at
//!    the admin-api (`POST /v1/declarative/webhook`, HMAC-signed) until the API serves the
//!    change (target: under 2 s), each round beside the same leader's pass when nothing
//!    changed (a sync request with no new commit), measured the same way, as the reference.
//!
//! Raw outputs stay in `target/bench/reconcile/`.

use crate::bench::{admin_token, drop_database, fresh_database, prepare, sh, start_server_with};
use anyhow::{bail, Context};
use clap::Args;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct ReconcileBenchArgs {
    /// `postgres` or `sqlite`.
    #[arg(long, default_value = "postgres")]
    backend: String,
    /// Org files in the repository.
    #[arg(long, default_value_t = 20_000)]
    orgs: u32,
    /// One-org commits measured from webhook to applied.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    #[arg(long, default_value = "127.0.0.1:18186")]
    listen: String,
    #[arg(long, default_value = "127.0.0.1:18187")]
    reconciler_listen: String,
}

const PUSH_SECRET: &str = "bench push webhook secret";

fn org_file(i: u32, display_name: &str) -> String {
    format!(
        "version: 1\nslug: org-{i:05}\ndisplay_name: {display_name}\n\
         roles:\n  - name: deployer\n    permissions: [service_accounts:read]\n\
         members:\n  - email: {admin}\n    roles: [owner]\n\
         \x20 - email: dev-{i:05}@example.com\n    roles: [deployer]\n\
         service_accounts:\n  - name: ci\n    roles: [deployer]\n\
         budget:\n  period: monthly\n  limit_cents: 10000\n",
        admin = crate::bench::ADMIN,
    )
}

fn git(repo: &Path, args: &[&str]) -> anyhow::Result<String> {
    sh(Command::new("git")
        .args(args)
        .current_dir(repo)
        .env("GIT_AUTHOR_NAME", "Bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "Bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com"))
}

/// Run `cmd` to its end: (success, seconds, peak RSS in MB as last sampled before it exited).
fn measured(cmd: &mut Command, out: &Path) -> anyhow::Result<(bool, f64, f64)> {
    let started = Instant::now();
    let mut child = cmd
        .stdout(std::fs::File::create(out)?)
        .stderr(std::fs::File::create(out.with_extension("log"))?)
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let mut peak = 0.0_f64;
    let status = loop {
        if let Some(rss) = crate::bench::peak_rss_mb(child.id()) {
            peak = peak.max(rss);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok((status.success(), started.elapsed().as_secs_f64(), peak))
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run(args: ReconcileBenchArgs) -> anyhow::Result<()> {
    let (root, work, rt) = prepare("reconcile")?;
    let reconciler = crate::release::build(&root, "reconciler")?;
    let uosctl = crate::release::build(&root, "uosctl")?;
    let database_url = fresh_database(&args.backend, &work, &rt)?;
    let base = format!("http://{}", args.listen);
    let _server = start_server_with(
        &root,
        &work,
        &database_url,
        &args.listen,
        &base,
        &[("UOS_DECLARATIVE__WEBHOOK_SECRET", PUSH_SECRET)],
    )?;
    let env = |c: &mut Command| {
        c.env("UOS_DATABASE_URL", &database_url)
            .env("UOS_DATA_DIR", work.join("data"))
            .env("RUST_LOG", "warn");
    };

    let repo = work.join("repo");
    std::fs::create_dir_all(repo.join("orgs"))?;
    git(&repo, &["init", "-q", "-b", "main"])?;
    for i in 0..args.orgs {
        std::fs::write(
            repo.join(format!("orgs/org-{i:05}.yaml")),
            org_file(i, &format!("Org {i}")),
        )?;
    }
    git(&repo, &["add", "-A"])?;
    git(&repo, &["commit", "-q", "-m", "every org"])?;
    let repo_arg = repo.to_str().context("a UTF-8 work dir")?;

    // 1. The first apply of every org.
    let mut cmd = Command::new(&reconciler);
    cmd.args(["--once", "--repo", repo_arg]);
    env(&mut cmd);
    let (ok, apply_secs, apply_rss) = measured(&mut cmd, &work.join("apply.out"))?;
    if !ok {
        bail!(
            "the first apply failed; see {}",
            work.join("apply.out").display()
        );
    }
    let applied = std::fs::read_to_string(work.join("apply.out"))?
        .lines()
        .filter(|l| l.contains(": applied ("))
        .count();
    if applied != args.orgs as usize {
        bail!("{applied} of {} orgs applied", args.orgs);
    }

    // 2. The plan of every org against the store that holds them.
    let mut cmd = Command::new(&uosctl);
    cmd.args(["declarative", "plan", "--repo", repo_arg]);
    env(&mut cmd);
    let (ok, plan_secs, plan_rss) = measured(&mut cmd, &work.join("plan.out"))?;
    let plan = std::fs::read_to_string(work.join("plan.out"))?;
    let unchanged = plan.matches("no changes").count();
    if !ok || unchanged != args.orgs as usize {
        bail!(
            "the plan should find nothing to change ({unchanged} of {} unchanged); see {}",
            args.orgs,
            work.join("plan.out").display()
        );
    }

    // 3. The running leader: webhook to applied, beside a pass with nothing to do.
    let mut cmd = Command::new(&reconciler);
    cmd.args(["--repo", repo_arg])
        .env("UOS_DECLARATIVE__POLL_SECS", "3600")
        .env("UOS_DECLARATIVE__LISTEN", &args.reconciler_listen)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.join("leader.log"))?);
    env(&mut cmd);
    let _leader = Killed(cmd.spawn().context("starting the reconciler")?);
    let metrics = format!("http://{}/metrics", args.reconciler_listen);
    let passes = || -> f64 {
        sh(Command::new("curl").args(["-sS", &metrics]))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("uos_reconcile_passes_total{result=\"ok\"} "))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0.0)
    };
    let wait_passes = |n: f64| -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(600);
        while passes() < n {
            if Instant::now() > deadline {
                bail!("the leader made no pass {n}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    };
    wait_passes(1.0)?;
    let token = admin_token(&base)?;
    let auth = format!("authorization: Bearer {token}");
    let mut pushes = Vec::new();
    let mut idles = Vec::new();
    for round in 1..=args.rounds {
        // The reference: a sync with no new commit, until the leader counts the pass.
        let before = passes();
        let started = Instant::now();
        sh(Command::new("curl").args([
            "-sSf",
            "-X",
            "POST",
            &format!("{base}/v1/declarative/sync"),
            "-H",
            &auth,
            "-H",
            "content-type: application/json",
            "-d",
            "{}",
        ]))?;
        wait_passes(before + 1.0)?;
        idles.push(started.elapsed().as_secs_f64());

        let name = format!("Round {round}");
        std::fs::write(repo.join("orgs/org-00000.yaml"), org_file(0, &name))?;
        git(&repo, &["commit", "-q", "-am", &name])?;
        let body = format!(r#"{{"ref":"refs/heads/main","round":{round}}}"#);
        let signature = {
            use hmac::{Hmac, Mac};
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(PUSH_SECRET.as_bytes())?;
            mac.update(body.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        };
        let started = Instant::now();
        sh(Command::new("curl").args([
            "-sSf",
            "-X",
            "POST",
            &format!("{base}/v1/declarative/webhook"),
            "-H",
            "content-type: application/json",
            "-H",
            &format!("x-hub-signature-256: sha256={signature}"),
            "--data-binary",
            &body,
        ]))?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let org = sh(Command::new("curl").args([
                "-sS",
                &format!("{base}/v1/orgs/org-00000"),
                "-H",
                &auth,
            ]))?;
            if org.contains(&format!("\"display_name\":\"{name}\"")) {
                break;
            }
            if Instant::now() > deadline {
                bail!("round {round} was never applied");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        pushes.push(started.elapsed().as_secs_f64());
    }
    drop_database(&database_url, &rt)?;

    let n = f64::from(args.orgs);
    println!("reconciler, {} orgs on {}:", args.orgs, args.backend);
    println!(
        "  first apply (reconciler --once): {apply_secs:.1}s ({:.0} orgs/s), peak RSS {apply_rss:.0} MB",
        n / apply_secs
    );
    println!(
        "  plan of every org against the store (uosctl declarative plan): {plan_secs:.1}s ({:.0} orgs/s), peak RSS {plan_rss:.0} MB (target < 30 s: {})",
        n / plan_secs,
        if plan_secs < 30.0 { "met" } else { "NOT met" }
    );
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|s| format!("{:.2}s", s))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let worst = pushes.iter().copied().fold(0.0, f64::max);
    println!(
        "  one-org commit, push webhook to served: {} (worst {worst:.2}s; target < 2 s: {})",
        fmt(&pushes),
        if worst < 2.0 { "met" } else { "NOT met" }
    );
    println!(
        "  reference, a sync pass with nothing new, request to counted: {}",
        fmt(&idles)
    );
    Ok(())
}
