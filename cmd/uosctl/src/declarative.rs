//! `uosctl declarative`: the config repository's format, checked offline, and the plan of
//! what applying it would change in a store.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum DeclarativeCommand {
    /// Print the JSON Schema of an org file (`orgs/<slug>.yaml`).
    Schema,
    /// Check every org file of a repository checkout; each problem is printed as
    /// `file:line:column: field: message`. Exit 1 if any file is invalid.
    Validate {
        /// The repository's working tree (the directory that holds `orgs/`).
        #[arg(long)]
        repo: PathBuf,
        /// Print the result as JSON (`{orgs: [{file, slug?, valid, problems}]}`).
        #[arg(long)]
        json: bool,
    },
    /// What applying a repository checkout would change in the configured store
    /// (`UOS_DATABASE_URL`, as for `admin-api`); reads only. Exit 1 if a file is invalid or a
    /// declared change would be refused.
    Plan {
        /// The repository's working tree (the directory that holds `orgs/`).
        #[arg(long)]
        repo: PathBuf,
        /// Print the plans as JSON (`{plans: [...], invalid: [{file, problems}]}`).
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: DeclarativeCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DeclarativeCommand::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&uos_reconcile::json_schema())?
            );
            Ok(ExitCode::SUCCESS)
        }
        DeclarativeCommand::Validate { repo, json } => validate(&repo, json),
        DeclarativeCommand::Plan { repo, json } => plan(&repo, json),
    }
}

fn plan(repo: &std::path::Path, json: bool) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    if !repo.is_dir() {
        anyhow::bail!("{} is not a directory", repo.display());
    }
    let entries = uos_reconcile::read_repo(repo)?;
    let cfg = uos_app::Config::load().context("loading configuration")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (plans, invalid) = rt.block_on(async {
        let store = uos_app::open_store(&cfg)
            .await
            .context("opening the store")?;
        let mut plans = Vec::new();
        let mut invalid = Vec::new();
        for e in &entries {
            match &e.result {
                Ok(org) => {
                    let mut r = store.read().await.context("reading the store")?;
                    plans.push(uos_reconcile::plan_org(&mut *r, org).await?);
                }
                Err(problems) => invalid.push((e.file.clone(), problems.clone())),
            }
        }
        store.close().await;
        anyhow::Ok((plans, invalid))
    })?;
    let refused = plans.iter().any(|p| !p.refusals.is_empty());
    if json {
        let invalid: Vec<_> = invalid
            .iter()
            .map(|(file, problems)| serde_json::json!({"file": file, "problems": problems}))
            .collect();
        println!(
            "{}",
            serde_json::json!({ "plans": plans, "invalid": invalid })
        );
    } else {
        for p in &plans {
            print!("{}", p.render());
        }
        for (_, problems) in &invalid {
            for p in problems {
                println!("{p}");
            }
        }
    }
    Ok(if invalid.is_empty() && !refused {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn validate(repo: &std::path::Path, json: bool) -> anyhow::Result<ExitCode> {
    if !repo.is_dir() {
        anyhow::bail!("{} is not a directory", repo.display());
    }
    let entries = uos_reconcile::read_repo(repo)?;
    let invalid = entries.iter().filter(|e| e.result.is_err()).count();
    if json {
        let orgs: Vec<_> = entries
            .iter()
            .map(|e| match &e.result {
                Ok(org) => serde_json::json!({
                    "file": e.file, "slug": org.slug, "valid": true, "problems": [],
                }),
                Err(problems) => serde_json::json!({
                    "file": e.file, "valid": false, "problems": problems,
                }),
            })
            .collect();
        println!("{}", serde_json::json!({ "orgs": orgs }));
    } else {
        for e in &entries {
            match &e.result {
                Ok(org) => println!("ok {} ({})", e.file, org.slug),
                Err(problems) => {
                    for p in problems {
                        println!("{p}");
                    }
                }
            }
        }
        eprintln!(
            "{} org files, {} valid, {invalid} invalid",
            entries.len(),
            entries.len() - invalid
        );
    }
    Ok(if invalid == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
