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
    /// What applying a repository checkout would change: planned against the configured store
    /// (`UOS_DATABASE_URL`, as for `admin-api`, opened read-only: nothing is migrated or
    /// written), or with `--api` by a running admin-api. Exit 1 if a file is invalid or a
    /// declared change would be refused.
    Plan {
        /// The repository's working tree (the directory that holds `orgs/`).
        #[arg(long)]
        repo: PathBuf,
        /// Plan through the admin-api at this base URL (e.g. `https://id.example.com`)
        /// instead of the store, as a platform admin whose access token is in `UOS_TOKEN`.
        #[arg(long)]
        api: Option<String>,
        /// Print the plans as JSON (`{plans: [...], invalid: [{file, problems}], blocked,
        /// text}`, as `POST /v1/declarative/plan` answers).
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
        DeclarativeCommand::Plan { repo, api, json } => plan(&repo, api.as_deref(), json),
    }
}

fn plan(repo: &std::path::Path, api: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    if !repo.is_dir() {
        anyhow::bail!("{} is not a directory", repo.display());
    }
    let entries = uos_reconcile::read_repo(repo)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let plan = match api {
        Some(base) => {
            let token = std::env::var("UOS_TOKEN")
                .context("--api needs a platform admin's access token in UOS_TOKEN")?;
            rt.block_on(plan_through_api(base, &token, entries))?
        }
        None => {
            let cfg = uos_app::Config::load().context("loading configuration")?;
            rt.block_on(async {
                let store = uos_app::open_store_read_only(&cfg)
                    .await
                    .context("opening the store")?;
                let planned = async {
                    let mut r = store.read().await?;
                    uos_reconcile::plan_repo(&mut *r, entries).await
                }
                .await;
                store.close().await;
                anyhow::Ok(serde_json::to_value(planned.context("reading the store")?)?)
            })?
        }
    };
    if json {
        println!("{plan}");
    } else {
        print!("{}", plan["text"].as_str().unwrap_or_default());
    }
    Ok(if plan["blocked"] == false {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Files per request and bytes of file text per request: below the API's limits (100 files,
/// a 1 MiB body), leaving room for JSON escaping.
const API_FILES: usize = 100;
const API_BYTES: usize = 512 * 1024;

/// The plan of `entries` by the admin-api at `base`: the valid files are sent in requests of
/// at most [`API_FILES`] files and about [`API_BYTES`] of text, the invalid ones reported
/// from here. Answers what the API answers, merged (`{plans, invalid, blocked, text}`).
async fn plan_through_api(
    base: &str,
    token: &str,
    entries: Vec<uos_reconcile::OrgEntry>,
) -> anyhow::Result<serde_json::Value> {
    use anyhow::Context as _;
    let url = format!("{}/v1/declarative/plan", base.trim_end_matches('/'));
    let client = reqwest::Client::new();
    let (valid, invalid): (Vec<_>, Vec<_>) = entries.into_iter().partition(|e| e.result.is_ok());
    let (mut plans, mut text, mut blocked) = (Vec::new(), String::new(), false);
    let mut batches: Vec<Vec<serde_json::Value>> = Vec::new();
    let mut bytes = 0;
    for e in valid {
        let full = batches
            .last()
            .is_none_or(|b| b.len() == API_FILES || bytes + e.text.len() > API_BYTES);
        if full {
            batches.push(Vec::new());
            bytes = 0;
        }
        bytes += e.text.len();
        let name = e.file.strip_prefix("orgs/").unwrap_or(&e.file).to_owned();
        if let Some(batch) = batches.last_mut() {
            batch.push(serde_json::json!({ "name": name, "content": e.text }));
        }
    }
    for files in batches {
        let res = client
            .post(&url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&serde_json::json!({ "files": files }))?)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = res.status();
        let body: serde_json::Value = serde_json::from_slice(&res.bytes().await?)
            .with_context(|| format!("POST {url} answered {status} without JSON"))?;
        if !status.is_success() {
            let detail = body["detail"].as_str().or(body["title"].as_str());
            anyhow::bail!(
                "POST {url} answered {status}: {}",
                detail.unwrap_or("no detail")
            );
        }
        if let Some(p) = body["plans"].as_array() {
            plans.extend(p.iter().cloned());
        }
        text.push_str(body["text"].as_str().unwrap_or_default());
        blocked |= body["blocked"] != false;
    }
    let invalid: Vec<_> = invalid
        .into_iter()
        .filter_map(|e| e.result.err().map(|problems| (e.file, problems)))
        .map(|(file, problems)| uos_reconcile::InvalidFile { file, problems })
        .collect();
    text.push_str(&uos_reconcile::problem_lines(&invalid));
    Ok(serde_json::json!({
        "plans": plans,
        "blocked": blocked || !invalid.is_empty(),
        "invalid": invalid,
        "text": text,
    }))
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
