//! `cargo xtask bench-machine`: machine-identity throughput against the release binary on
//! PostgreSQL + Redis, with wrk `-t1 -c32 -d15s --latency`:
//!
//! 1. seed 500,000 API keys through the store port (`MachineRepo::insert_api_key`, batches of
//!    5,000 per transaction) for a few service accounts of one org, hashed with the server's
//!    own pepper (read from the key directory the server then opens);
//! 2. warm: one key on `GET /v1/auth/whoami` (served from the per-replica key cache);
//! 3. introspection: `POST /v1/auth/introspect` of one key, authenticated with another (two
//!    key verifications per request);
//! 4. cold: the server restarted (empty caches; its connection pool opened by one second of
//!    `/readyz`), then each of 20,000 saved keys used once on `GET /v1/auth/whoami` — every
//!    request is a key-cache miss (the key's row by prefix; its account and org come from the
//!    replica's copies once read);
//! 5. client credentials: `POST /oauth2/token` with HTTP Basic (grants/s).
//!
//! Every run must be free of non-2xx responses and socket errors, or the task fails (after
//! printing the summary). Raw wrk outputs stay in `target/bench/machine/wrk-*.txt`.

use crate::bench::{
    admin_token, curl_json, drop_database, failed_runs, fresh_database, open_store, prepare,
    shared_state_env, verdict, write_script, wrk_stats, Launch, Server, WrkStats,
};
use anyhow::{bail, Context};
use base64::Engine as _;
use clap::Args;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;
use uos_domain::{ApiKey, ApiKeyId, OrgId, OrgSlug, Permission, ServiceAccountId};
use uos_keys::KeyProvider as _;
use uos_store::{PageRequest, Store};

/// What the issue asks of the warm path and of the token endpoint.
const WARM_TARGET_RPS: f64 = 45_000.0;
const WARM_TARGET_P99_MS: f64 = 2.0;
const GRANT_TARGET_RPS: f64 = 3_000.0;

#[derive(Debug, Args)]
pub struct MachineBenchArgs {
    /// `postgres` (or `sqlite`, seeded by one writer).
    #[arg(long, default_value = "postgres")]
    backend: String,
    /// Shared state for the server (`redis://…`); empty for the in-process default.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis: String,
    /// API keys to seed.
    #[arg(long, default_value_t = 500_000)]
    keys: u32,
    /// Service accounts of the benchmark org the keys are spread over.
    #[arg(long, default_value_t = 4)]
    accounts: u32,
    /// Keys per seeding transaction.
    #[arg(long, default_value_t = 5_000)]
    batch: u32,
    /// Seeding transactions in flight at once (PostgreSQL).
    #[arg(long, default_value_t = 4)]
    seed_workers: u32,
    /// Distinct keys the cold-cache run uses, each once.
    #[arg(long, default_value_t = 40_000)]
    cold_keys: u32,
    /// Seconds of the cold-cache run: short, so that no key is used twice.
    #[arg(long, default_value_t = 3)]
    cold_duration: u32,
    /// Seconds per (other) wrk run.
    #[arg(long, default_value_t = 15)]
    duration: u32,
    #[arg(long, default_value_t = 32)]
    connections: u32,
    #[arg(long, default_value = "127.0.0.1:18183")]
    listen: String,
    /// The server's request threads (`UOS_WORKER_THREADS`); 0 for its default, one per core.
    /// wrk shares the machine: with 1, it keeps a core of its own.
    #[arg(long, default_value_t = 0)]
    workers: usize,
}

impl MachineBenchArgs {
    /// The command line that reproduces this run.
    fn command(&self) -> String {
        format!(
            "cargo run -p xtask --release -- bench-machine --backend {} --redis '{}' --keys {} \
             --accounts {} --batch {} --seed-workers {} --cold-keys {} --cold-duration {} \
             --duration {} --connections {} --listen {} --workers {}",
            self.backend,
            self.redis,
            self.keys,
            self.accounts,
            self.batch,
            self.seed_workers,
            self.cold_keys,
            self.cold_duration,
            self.duration,
            self.connections,
            self.listen,
            self.workers
        )
    }
}

pub fn run(args: MachineBenchArgs) -> anyhow::Result<()> {
    if args.keys < args.cold_keys + 2 || args.accounts == 0 || args.batch == 0 {
        bail!("need --keys ≥ --cold-keys + 2, --accounts ≥ 1 and --batch ≥ 1");
    }
    let (root, work, rt) = prepare("machine")?;
    let database_url = fresh_database(&args.backend, &work, &rt)?;
    // The pepper the server hashes presented keys with lives in its key directory; create that
    // directory now (the server opens the same files) so the seeded hashes match.
    let pepper = uos_keys::LocalKeyStore::open(&work.join("data/keys"))?
        .secret("api-key-pepper")
        .context("reading the API-key pepper")?;

    let prefix = format!("uos-bench-machine-{}:", std::process::id());
    let workers = args.workers.to_string();
    let mut env = shared_state_env(&args.redis, &prefix)?;
    env.push(("UOS_WORKER_THREADS", workers.as_str()));
    let launch = Launch::new(&root, &work, &database_url, &args.listen, env);
    let server = launch.start()?;
    let base = launch.base.clone();

    // The org and its accounts through the API, as an operator would make them.
    let admin = admin_token(&base)?;
    let admin_auth = format!("authorization: Bearer {admin}");
    let post = |path: &str, body: serde_json::Value| {
        curl_json(&[
            &format!("{base}{path}"),
            "-H",
            &admin_auth,
            "-H",
            "content-type: application/json",
            "-d",
            &body.to_string(),
        ])
    };
    post(
        "/v1/orgs",
        serde_json::json!({"slug": "bench", "display_name": "Bench"}),
    )?;
    let mut account_ids = Vec::new();
    for i in 0..args.accounts {
        let sa = post(
            "/v1/orgs/bench/service-accounts",
            serde_json::json!({"name": format!("bench-sa-{i}"), "roles": ["member"]}),
        )?;
        account_ids.push(
            sa["id"]
                .as_str()
                .with_context(|| format!("creating a service account returned {sa}"))?
                .to_string(),
        );
    }

    // 20,000 + 2 keys are kept: the warm key, the introspecting caller, the cold set.
    let saved: Vec<String> = (0..args.cold_keys + 2)
        .map(|_| uos_authn::generate_api_key().key)
        .collect();
    let warm_key = saved[0].clone();
    let caller_key = saved[1].clone();
    let cold_file = work.join("cold-keys.txt");
    std::fs::write(&cold_file, saved[2..].join("\n") + "\n")?;

    let workers = if args.backend == "sqlite" {
        1
    } else {
        args.seed_workers.max(1)
    };
    let started = Instant::now();
    let batches = rt.block_on(seed_keys(
        &database_url,
        Seed {
            total: args.keys,
            batch: args.batch,
            workers,
            pepper,
            saved: Arc::new(saved),
        },
    ))?;
    let seed_secs = started.elapsed().as_secs_f64();
    eprintln!("xtask: seeded {} API keys in {seed_secs:.1}s", args.keys);

    // The seeded keys are real: the server accepts one (so the pepper matched).
    let who = curl_json(&[
        &format!("{base}/v1/auth/whoami"),
        "-H",
        &format!("authorization: Bearer {warm_key}"),
    ])?;
    if who["kind"] != "service_account" {
        bail!("a seeded key was not accepted: {who}");
    }

    let script = |name: &str, text: String| write_script(&work, name, &text);
    let (c, d) = (args.connections, args.duration);

    eprintln!("xtask: warm run (one cached key)");
    let warm = wrk_stats(
        c,
        d,
        &work,
        "warm-whoami",
        &format!("authorization: Bearer {warm_key}"),
        &format!("{base}/v1/auth/whoami"),
        None,
    )?;

    eprintln!("xtask: introspection run (two key verifications per request)");
    let introspect_lua = script(
        "introspect.lua",
        format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/x-www-form-urlencoded\"\nwrk.body = \"token={warm_key}\"\n"
        ),
    )?;
    let introspect = wrk_stats(
        c,
        d,
        &work,
        "introspect",
        &format!("authorization: Bearer {caller_key}"),
        &format!("{base}/v1/auth/introspect"),
        Some(&introspect_lua),
    )?;
    let check = curl_json(&[
        &format!("{base}/v1/auth/introspect"),
        "-H",
        &format!("authorization: Bearer {caller_key}"),
        "-d",
        &format!("token={warm_key}"),
    ])?;
    if check["active"] != true {
        bail!("introspection of the warm key did not say active: {check}");
    }

    // Client credentials: one account's secret, every grant a fresh token.
    let secret = post(
        &format!(
            "/v1/orgs/bench/service-accounts/{}/client-secret",
            account_ids[0]
        ),
        serde_json::json!({}),
    )?;
    let (Some(client_id), Some(client_secret)) = (
        secret["client_id"].as_str(),
        secret["client_secret"].as_str(),
    ) else {
        bail!("issuing a client secret returned {secret}");
    };
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{client_secret}"));
    let grant_lua = script(
        "token.lua",
        "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/x-www-form-urlencoded\"\nwrk.body = \"grant_type=client_credentials\"\n".into(),
    )?;
    eprintln!("xtask: client-credentials run");
    let grants = wrk_stats(
        c,
        d,
        &work,
        "oauth2-token",
        &format!("authorization: Basic {basic}"),
        &format!("{base}/oauth2/token"),
        Some(&grant_lua),
    )?;

    let (restarted, prime, cold) = cold_run(&launch, server, c, args.cold_duration, &cold_file)?;

    let mut out = String::new();
    writeln!(
        out,
        "== bench-machine: backend={} shared={} wrk -t1 -c{c} -d{d}s --latency (cold run -d{}s); {} cores",
        args.backend,
        if args.redis.is_empty() { "memory" } else { "redis" },
        args.cold_duration,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    )?;
    writeln!(out, "command: {}", args.command())?;
    writeln!(
        out,
        "seed:        {} API keys over {} service accounts of org bench, {batches} transactions of ≤{} keys via MachineRepo::insert_api_key ({workers} at a time): {seed_secs:.1} s ({:.0} keys/s)",
        args.keys,
        args.accounts,
        args.batch,
        f64::from(args.keys) / seed_secs
    )?;
    writeln!(
        out,
        "warm:        GET  /v1/auth/whoami, one cached API key         {warm}  [target ≥{WARM_TARGET_RPS:.0}/s, p99 <{WARM_TARGET_P99_MS} ms: {}]",
        verdict(warm.rps >= WARM_TARGET_RPS && warm.p99_ms().is_some_and(|p| p < WARM_TARGET_P99_MS))
    )?;
    writeln!(
        out,
        "introspect:  POST /v1/auth/introspect, key caller + key token {introspect}  (two key verifications per request)"
    )?;
    let misses = cold_misses(&cold, u64::from(args.cold_keys));
    writeln!(
        out,
        "cold:        GET  /v1/auth/whoami after a restart, {} distinct keys {cold}  ({misses}; pool opened first by 1 s of /readyz: {:.0} req/s)",
        args.cold_keys, prime.rps
    )?;
    writeln!(
        out,
        "grants:      POST /oauth2/token client_credentials, HTTP Basic {grants}  [target ≥{GRANT_TARGET_RPS:.0}/s: {}]",
        verdict(grants.rps >= GRANT_TARGET_RPS)
    )?;
    let shown = work.canonicalize().unwrap_or_else(|_| work.clone());
    writeln!(out, "raw wrk outputs: {}/wrk-*.txt", shown.display())?;
    print!("{out}");
    std::fs::write(work.join("summary.txt"), &out)?;

    let failed = failed_runs([
        ("warm", &warm),
        ("introspect", &introspect),
        ("cold pool priming", &prime),
        ("cold", &cold),
        ("grants", &grants),
    ]);
    drop(restarted);
    drop_database(&database_url, &rt)?;
    if !failed.is_empty() {
        bail!("runs with errors: {}", failed.join("; "));
    }
    Ok(())
}

/// The cold-cache run: a fresh process has empty caches, so `server` is stopped (its log kept
/// as `admin-api-1.log`) and started again, its store connection pool opened by one second of
/// `/readyz` — the run is about cache misses, not about connecting to PostgreSQL — and then
/// each key of `keys_file` (one a line) is presented once on `GET /v1/auth/whoami` for
/// `duration` seconds. Returns the restarted server, the priming run and the cold run.
pub(crate) fn cold_run(
    launch: &Launch,
    server: Server,
    connections: u32,
    duration: u32,
    keys_file: &Path,
) -> anyhow::Result<(Server, WrkStats, WrkStats)> {
    drop(server);
    std::fs::rename(
        launch.work.join("admin-api.log"),
        launch.work.join("admin-api-1.log"),
    )?;
    eprintln!("xtask: restarting the server for the cold-cache run");
    let restarted = launch.start()?;
    // No API key is presented here.
    let prime = wrk_stats(
        connections,
        1,
        launch.work,
        "cold-prime-readyz",
        "accept: application/json",
        &format!("{}/readyz", launch.base),
        None,
    )?;
    let cold_lua = write_script(
        launch.work,
        "cold.lua",
        &COLD_LUA.replace("KEYS", &keys_file.display().to_string()),
    )?;
    let cold = wrk_stats(
        connections,
        duration,
        launch.work,
        "cold-whoami",
        "accept: application/json",
        &format!("{}/v1/auth/whoami", launch.base),
        Some(&cold_lua),
    )?;
    Ok((restarted, prime, cold))
}

/// Whether every request of the cold run was a miss: the script wraps around to the first key
/// when the `keys` run out, and from then on the keys are cached.
pub(crate) fn cold_misses(cold: &WrkStats, keys: u64) -> String {
    if cold.requests <= keys {
        format!(
            "every one of the {} requests was a key-cache miss (a read of the key's row)",
            cold.requests
        )
    } else {
        format!(
            "only the first {keys} requests were cache misses; the other {} reused keys (raise --cold-keys)",
            cold.requests - keys
        )
    }
}

struct Seed {
    total: u32,
    batch: u32,
    workers: u32,
    pepper: [u8; 32],
    /// Keys whose text is kept (the first ones seeded); the rest are generated and forgotten.
    saved: Arc<Vec<String>>,
}

/// Insert `total` API keys straight through the store port, `batch` per transaction and
/// `workers` transactions at a time, spread round-robin over the org's service accounts.
/// Returns the number of transactions.
async fn seed_keys(database_url: &str, seed: Seed) -> anyhow::Result<u32> {
    let store = open_store(database_url).await?;
    let (org, accounts) = {
        let mut r = store.read().await?;
        let org = r
            .get_org_by_slug(&OrgSlug::parse("bench")?)
            .await?
            .context("bench org missing")?;
        let accounts: Vec<ServiceAccountId> = r
            .list_service_accounts(org.id, false, &PageRequest::first(100))
            .await?
            .items
            .into_iter()
            .map(|sa| sa.id)
            .collect();
        (org.id, accounts)
    };
    if accounts.is_empty() {
        bail!("the bench org has no service accounts");
    }
    let batches = seed.total.div_ceil(seed.batch);
    let next = Arc::new(AtomicU32::new(0));
    let seed = Arc::new(seed);
    let accounts = Arc::new(accounts);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..seed.workers {
        let (store, seed, next, accounts) = (
            Arc::clone(&store),
            Arc::clone(&seed),
            Arc::clone(&next),
            Arc::clone(&accounts),
        );
        tasks.spawn(async move {
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b >= batches {
                    return anyhow::Ok(());
                }
                let from = b * seed.batch;
                let to = (from + seed.batch).min(seed.total);
                seed_batch(&*store, &seed, org, &accounts, from..to).await?;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    store.close().await;
    Ok(batches)
}

/// Keys `range` (by index) in one transaction.
async fn seed_batch(
    store: &dyn Store,
    seed: &Seed,
    org: OrgId,
    accounts: &[ServiceAccountId],
    range: std::ops::Range<u32>,
) -> anyhow::Result<()> {
    let scopes = vec![Permission::parse("users:read")?];
    let mut tx = store.begin().await?;
    for i in range {
        let idx = i as usize;
        let key = match seed.saved.get(idx) {
            Some(k) => k.clone(),
            None => uos_authn::generate_api_key().key,
        };
        tx.insert_api_key(&api_key_row(
            &seed.pepper,
            &key,
            org,
            accounts[idx % accounts.len()],
            format!("bench key {i}"),
            scopes.clone(),
        )?)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// A new, active API key row for the key text `key`, hashed with `pepper` exactly as the server
/// hashes a presented key: what every seeder of keys writes (here through the store port,
/// `cargo xtask seed` through COPY).
pub(crate) fn api_key_row(
    pepper: &[u8; 32],
    key: &str,
    org: OrgId,
    account: ServiceAccountId,
    name: String,
    scopes: Vec<Permission>,
) -> anyhow::Result<ApiKey> {
    let parsed = uos_authn::parse_api_key(key)
        .map_err(|e| anyhow::anyhow!("generated key does not parse: {e}"))?;
    Ok(ApiKey {
        id: ApiKeyId::new(),
        org_id: org,
        service_account_id: account,
        name,
        prefix: parsed.prefix.to_string(),
        secret_hash: uos_authn::hash_api_key(pepper, key),
        scopes,
        created_at: uos_domain::now(),
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
        replaced_by: None,
        replaces: None,
        overdue_reported_at: None,
        quarantined_at: None,
        quarantine_reason: None,
        version: 1,
    })
}

const COLD_LUA: &str = r#"
-- Each request presents the next saved key (Authorization set per request in wrk.headers, so
-- no -H Authorization is given). After a restart none is cached: every request is a miss
-- until the list wraps around (reported by the xtask if it does).
local keys = {}
for line in io.lines("KEYS") do keys[#keys + 1] = "Bearer " .. line end
local i = 0
request = function()
  i = i + 1
  if i > #keys then i = 1 end
  wrk.headers["Authorization"] = keys[i]
  return wrk.format()
end
"#;
