//! `uosctl declarative`: the config repository's format, checked offline.

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
    }
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
