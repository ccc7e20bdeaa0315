//! `cargo xtask bench-identity`: the identity figures of the hardening issue, against the
//! release binary — argon2id hash time and the login bound it implies (cores ÷ hash time),
//! password logins/s, refreshes/s and introspections/s, with wrk `-t1 -c32 -d15s --latency`;
//! and where each login's CPU went (hashing, the rest of the server, PostgreSQL, Redis).
//!
//! Refresh tokens are single use, so the run seeds sessions with one fresh refresh token each
//! through the store port (signed with the server's refresh-token key from its data dir) and
//! the wrk script spends each token exactly once.

use crate::bench::{
    admin_token, drop_database, fresh_database, metric, open_store, prepare, start_server_with,
    write_script, wrk_stats, WrkStats, ADMIN, PASSWORD,
};
use crate::cpu::{CpuSample, CpuSplit, MachineShares, MachineTimes};
use crate::services;
use anyhow::Context;
use chrono::Duration as ChronoDuration;
use clap::Args;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use uos_domain::{Email, SessionId, UserId};
use uos_keys::KeyProvider as _;
use uos_store::{Session, Store};

#[derive(Debug, Args)]
pub struct IdentityBenchArgs {
    /// `sqlite` or `postgres`.
    #[arg(long, default_value = "postgres")]
    backend: String,
    /// Shared state for the server (`redis://…`); empty for the in-process default.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis: String,
    /// Sessions (each with one unused refresh token) to seed for the refresh run.
    #[arg(long, default_value_t = 80_000)]
    sessions: u32,
    #[arg(long, default_value_t = 15)]
    duration: u32,
    /// Login runs of `duration` seconds, each between two hash timings: the machine's speed
    /// drifts, so each run is compared with the bound measured around it. 0 skips logins.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    #[arg(long, default_value_t = 32)]
    connections: u32,
    #[arg(long, default_value = "127.0.0.1:18182")]
    listen: String,
    /// The server's request threads (`UOS_WORKER_THREADS`); 0 for its default, one per core.
    #[arg(long, default_value_t = 0)]
    workers: usize,
}

pub fn run(args: IdentityBenchArgs) -> anyhow::Result<()> {
    let (root, work, rt) = prepare("identity")?;
    let before = time_hash(&root)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let database_url = fresh_database(&args.backend, &work, &rt)?;
    if !args.redis.is_empty() {
        services::ensure_redis()?;
    }
    let prefix = format!("uos-bench-{}:", std::process::id());
    let base = format!("http://{}", args.listen);
    let workers = args.workers.to_string();
    let mut env = LOCKOUT_OFF.to_vec();
    env.extend([
        ("UOS_REDIS_PREFIX", prefix.as_str()),
        ("UOS_WORKER_THREADS", workers.as_str()),
    ]);
    if !args.redis.is_empty() {
        env.push(("UOS_REDIS_URL", args.redis.as_str()));
    }
    let server = start_server_with(&root, &work, &database_url, &args.listen, &base, &env)?;

    let token = admin_token(&base)?;
    let auth = format!("authorization: Bearer {token}");

    let tokens_file = work.join("refresh-tokens.txt");
    rt.block_on(seed_sessions(
        &database_url,
        &work.join("data/keys"),
        args.sessions,
        &tokens_file,
    ))?;

    let login_lua = login_script(&work)?;
    let refresh_lua = refresh_script(&work, &tokens_file)?;
    let introspect_lua = post_json_script(
        &work,
        "introspect.lua",
        &serde_json::json!({"token": token}),
    )?;

    let c = args.connections;
    let d = args.duration;
    // This machine's speed drifts by tens of percent within minutes: each login run is
    // compared with the bound from the hashes timed right before and right after it.
    let mut hashes = vec![before];
    let mut rounds = Vec::new();
    let run = |name: &str, path: &str, lua: &Path| -> anyhow::Result<Measured> {
        let machine = MachineTimes::take()?;
        let cpu_before = CpuSample::take(server.pid())?;
        let stats = wrk_stats(
            c,
            d,
            &work,
            name,
            &auth,
            &format!("{base}{path}"),
            Some(lua),
        )?;
        Ok(Measured {
            cpu: cpu_before.per_request_ms(&CpuSample::take(server.pid())?, stats.requests),
            shares: machine.shares(&MachineTimes::take()?),
            stats,
        })
    };
    // How often a login's one-step write found the audit head moved by a concurrent one and
    // fell back to a transaction that locks it.
    let conflicts = || metric(&base, "uos_audit_head_conflicts_total");
    let mut fallbacks = Vec::new();
    for _ in 0..args.rounds {
        let before = conflicts()?;
        let login = run("login", "/v1/auth/login", &login_lua)?;
        fallbacks.push((conflicts()? - before) / login.stats.requests.max(1) as f64);
        rounds.push(login);
        hashes.push(time_hash(&root)?);
    }
    let refresh = run("refresh", "/v1/auth/refresh", &refresh_lua)?;
    let introspect = run("introspect", "/v1/auth/introspect", &introspect_lua)?;

    let mut out = String::new();
    writeln!(
        out,
        "backend={} shared={} workers={} wrk -t1 -c{c} -d{d}s",
        args.backend,
        if args.redis.is_empty() {
            "memory"
        } else {
            "redis"
        },
        args.workers
    )?;
    let mut of_bound = Vec::new();
    for (i, round) in rounds.iter().enumerate() {
        let (h0, h1) = (hashes[i], hashes[i + 1]);
        let hash_ms = (h0.ms + h1.ms) / 2.0;
        let bound = cores as f64 * 1000.0 / hash_ms;
        let parallel = (h0.per_sec + h1.per_sec) / 2.0;
        let login = &round.stats;
        of_bound.push(100.0 * login.rps / bound);
        writeln!(
            out,
            "argon2id hash (default parameters, median of 30): {:.2} ms before, {:.2} ms after (CPU {:.2} / {:.2} ms); login bound = {cores} cores / {hash_ms:.2} ms = {bound:.0}/s; measured {parallel:.0} hashes/s on {cores} threads",
            h0.ms, h1.ms, h0.cpu_ms, h1.cpu_ms
        )?;
        writeln!(
            out,
            "POST /v1/auth/login       {login}  [{:.0} % of the bound, {:.0} % of the measured hash rate; target 90 % of the bound]",
            100.0 * login.rps / bound,
            100.0 * login.rps / parallel
        )?;
        writeln!(out, "  {}", round.costs("login"))?;
        writeln!(
            out,
            "  logins whose audit append found the head moved and fell back to a locking transaction: {:.1} %",
            100.0 * fallbacks[i]
        )?;
    }
    of_bound.sort_by(f64::total_cmp);
    if let Some(median) = of_bound.get(of_bound.len() / 2) {
        writeln!(
            out,
            "login, median of {} runs: {median:.0} % of the bound",
            of_bound.len()
        )?;
    }
    writeln!(out, "POST /v1/auth/refresh     {}", refresh.stats)?;
    writeln!(out, "  {}", refresh.costs("refresh"))?;
    writeln!(out, "POST /v1/auth/introspect  {}", introspect.stats)?;
    writeln!(out, "  {}", introspect.costs("introspection"))?;
    print!("{out}");
    drop_database(&database_url, &rt)
}

/// One wrk run, what each request cost and how busy the machine was meanwhile.
struct Measured {
    stats: WrkStats,
    cpu: CpuSplit,
    shares: MachineShares,
}

impl Measured {
    fn costs(&self, per: &str) -> String {
        format!(
            "CPU per {per}: {}; machine during the run: {:.1} % idle, {:.1} % taken by the hypervisor (steal)",
            self.cpu,
            100.0 * self.shares.idle,
            100.0 * self.shares.steal
        )
    }
}

/// Server settings for a benchmark that logs one account in 32 times at once: the account and
/// address lockouts (counted before the password is checked) would rightly stop that.
pub(crate) const LOCKOUT_OFF: [(&str, &str); 2] = [
    ("UOS_SERVICE__LOCKOUT__THRESHOLD", "1000000000"),
    ("UOS_SERVICE__LOCKOUT__IP_THRESHOLD", "1000000000"),
];

/// The `hash_time` example's figures.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HashTiming {
    /// Median wall time of one hash, one thread.
    pub(crate) ms: f64,
    /// Hashes per second with one thread per core.
    pub(crate) per_sec: f64,
    /// Mean CPU time of one hash (what the hypervisor took left out).
    pub(crate) cpu_ms: f64,
}

/// The `hash_time` example of `uos-authn`: `build` it, or `run` it.
fn hash_time_cargo(root: &Path, verb: &str) -> anyhow::Result<String> {
    crate::release::example(root, "uos-authn", "hash_time", verb, &[])
}

/// Build the hash timer before a run that times hashes mid-way, so the timing does not wait
/// for a compile while the machine drifts.
pub(crate) fn build_hash_time(root: &Path) -> anyhow::Result<()> {
    eprintln!("xtask: building the argon2id timer");
    hash_time_cargo(root, "build").map(drop)
}

pub(crate) fn time_hash(root: &Path) -> anyhow::Result<HashTiming> {
    eprintln!("xtask: timing argon2id hashes");
    let timing = hash_time_cargo(root, "run")?;
    let nums: Vec<f64> = timing
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("hash_time printed {timing:?}"))?;
    let [ms, per_sec, cpu_ms] = nums[..] else {
        anyhow::bail!("hash_time printed {timing:?}");
    };
    Ok(HashTiming {
        ms,
        per_sec,
        cpu_ms,
    })
}

/// The wrk script of password logins: the benchmark admin, every request.
pub(crate) fn login_script(work: &Path) -> anyhow::Result<PathBuf> {
    post_json_script(
        work,
        "login.lua",
        &serde_json::json!({"email": ADMIN, "password": PASSWORD}),
    )
}

/// A wrk script that POSTs the same JSON `body` every request.
fn post_json_script(work: &Path, name: &str, body: &serde_json::Value) -> anyhow::Result<PathBuf> {
    write_script(
        work,
        name,
        &format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = '{body}'\n"
        ),
    )
}

/// The wrk script of refreshes, spending the tokens of `tokens_file` (one a line) in order.
pub(crate) fn refresh_script(work: &Path, tokens_file: &Path) -> anyhow::Result<PathBuf> {
    write_script(
        work,
        "refresh.lua",
        &REFRESH_LUA.replace("TOKENS", &tokens_file.display().to_string()),
    )
}

/// Sessions of the admin, each with one unused refresh token, written one token per line. The
/// tokens are signed with the key the server (data dir `keys`) signs its own with. Four
/// transactions of up to 1,000 sessions are in flight at once: one writer leaves
/// PostgreSQL waiting on its round trips, and the refresh runs need 100,000s of tokens.
pub(crate) async fn seed_sessions(
    database_url: &str,
    keys: &Path,
    n: u32,
    out: &Path,
) -> anyhow::Result<()> {
    let key = uos_keys::LocalKeyStore::open(keys)?.secret("refresh-token-key")?;
    let store = open_store(database_url).await?;
    let admin = store
        .read()
        .await?
        .get_user_by_email(&Email::parse(ADMIN)?)
        .await?
        .context("bench admin missing")?
        .id;
    let next = Arc::new(AtomicU32::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (store, next) = (Arc::clone(&store), Arc::clone(&next));
        tasks.spawn(async move {
            let mut lines = String::new();
            loop {
                let from = next.fetch_add(1000, Ordering::Relaxed);
                if from >= n {
                    return anyhow::Ok(lines);
                }
                lines.push_str(&open_sessions(&*store, &key, admin, 1000.min(n - from)).await?);
            }
        });
    }
    let mut lines = String::new();
    while let Some(done) = tasks.join_next().await {
        lines.push_str(&done??);
    }
    store.close().await;
    std::fs::write(out, lines)?;
    Ok(())
}

/// `count` sessions of `user` in one transaction, each with one unused refresh token; the
/// tokens, one a line. The one place that knows how a refresh token is stored: the benches
/// that refresh seed through it.
async fn open_sessions(
    store: &dyn Store,
    key: &[u8; 32],
    user: UserId,
    count: u32,
) -> anyhow::Result<String> {
    let mut tx = store.begin().await?;
    let mut lines = String::new();
    for _ in 0..count {
        let now = uos_domain::now();
        let session = Session {
            id: SessionId::new(),
            user_id: user,
            created_at: now,
            expires_at: now + ChronoDuration::days(1),
            revoked_at: None,
            last_seen_at: now,
            user_agent: Some("wrk".into()),
            ip: None,
        };
        let token = uos_authn::issue_refresh_token(key, session.id.0, 0);
        tx.insert_session(&session, &uos_authn::hash_token(&token))
            .await?;
        lines.push_str(&token);
        lines.push('\n');
    }
    tx.commit().await?;
    Ok(lines)
}

const REFRESH_LUA: &str = r#"
-- Each request spends one seeded refresh token, never the same one twice (a reuse would be
-- detected and answered 401). Stops issuing new tokens when the file runs out.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = nil
local tokens = {}
for line in io.lines("TOKENS") do tokens[#tokens + 1] = line end
local i = 0
request = function()
  i = i + 1
  if i > #tokens then i = #tokens end
  return wrk.format(nil, nil, nil, '{"refresh_token":"' .. tokens[i] .. '"}')
end
"#;
