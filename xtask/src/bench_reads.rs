//! `cargo xtask bench-reads`: issue 19's hot paths in one run against the release binary on
//! PostgreSQL + Redis, each figure also as a share of `GET /healthz` measured in the same run.
//! This machine's speed drifts by up to 2× within an hour, so an absolute rate compared with
//! one taken at another time says little; a share of a reference taken minutes from it, on the
//! same server, connections and wrk, says how much of the HTTP stack's capacity a handler
//! leaves. With wrk `-t1 -c32 -d15s --latency`:
//!
//! 1. seed a fresh database with `seed`'s loader at a scale that loads in seconds (200,000
//!    users, 120,000 of them members of `scale-00000`, 100,000 API keys of which the texts of
//!    the first 50,000 are kept), and sessions with one unused refresh token each through the
//!    store port (`bench-identity`'s seeding);
//! 2. `/healthz`, the reference's first measurement;
//! 3. as the platform admin: a user by id, an org by slug and a member of `scale-00000` by user
//!    id, each request picking one of 10,000 (or every org) at random, so the reads spread over
//!    the tables as an admin console's do; and `scale-00000`'s first members page of 20. Each
//!    is measured after a warm-up run of the same requests (`--warm-up` seconds, its figures
//!    printed on a row of their own): the measured run is the steady state an admin console
//!    sees, while the warm-up's first reads of each id are the cache misses, one statement each;
//! 4. refresh: each request spends one seeded token (they are single use);
//! 5. password logins of the admin, between two timings of argon2id with one thread per core:
//!    a login is one hash, so the hash rate is its bound;
//! 6. cold API-key checks: the server restarted (empty caches), each request presenting a
//!    distinct seeded key once on `GET /v1/auth/whoami` (`bench-machine`'s cold run);
//! 7. `/healthz` again: the reference is the mean of the two, and both are printed, so drift
//!    during the run shows.
//!
//! It prints one table, every row beside the target for it (met or MISSED); missed
//! targets are the to close, not errors. A non-2xx response or a socket error in any
//! run fails the task (after the table), as does a refresh run that ran out of tokens or a cold
//! run that ran out of keys (its requests would no longer be what they claim). Raw wrk outputs
//! stay in `target/bench/reads/wrk-*.txt`.

use crate::bench::{
    admin_token, curl_json, drop_database, failed_runs, fresh_database, latency_ms, prepare,
    random_paths_script, sh, shared_state_env, verdict, write_script, wrk_stats, Launch, Load,
    WrkStats,
};
use crate::bench_identity::{
    build_hash_time, login_script, refresh_script, seed_sessions, time_hash, LOCKOUT_OFF,
};
use crate::bench_machine::{cold_misses, cold_run};
use crate::seed::{self, id, Kind, Scale};
use anyhow::bail;
use clap::Args;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

#[derive(Debug, Args)]
pub struct ReadsBenchArgs {
    #[arg(long, default_value_t = 200_000)]
    users: u64,
    #[arg(long, default_value_t = 2_000)]
    orgs: u64,
    #[arg(long, default_value_t = 400_000)]
    memberships: u64,
    /// Members of `scale-00000`, the org whose members are read (the issue asks for 100k+);
    /// part of `--memberships`.
    #[arg(long, default_value_t = 120_000)]
    large_org_members: u64,
    #[arg(long, default_value_t = 100_000)]
    api_keys: u64,
    /// Seeded API keys the cold run presents, each once; at most `--api-keys`.
    #[arg(long, default_value_t = 50_000)]
    cold_keys: u64,
    /// Seconds of the cold run: short, so that no key is presented twice.
    #[arg(long, default_value_t = 3)]
    cold_duration: u32,
    /// Sessions with one unused refresh token each: the refresh run spends one a request.
    #[arg(long, default_value_t = 150_000)]
    refresh_tokens: u32,
    /// Seconds of the warm-up run before each read's measured run.
    #[arg(long, default_value_t = 5)]
    warm_up: u32,
    #[command(flatten)]
    load: Load,
    #[arg(long, default_value = "127.0.0.1:18187")]
    listen: String,
}

impl ReadsBenchArgs {
    /// The command line that reproduces this run.
    fn command(&self) -> String {
        format!(
            "cargo xtask bench-reads --users {} --orgs {} --memberships {} --large-org-members {} \
             --api-keys {} --cold-keys {} --cold-duration {} --refresh-tokens {} --warm-up {} \
             --redis '{}' --duration {} --connections {} --listen {}",
            self.users,
            self.orgs,
            self.memberships,
            self.large_org_members,
            self.api_keys,
            self.cold_keys,
            self.cold_duration,
            self.refresh_tokens,
            self.warm_up,
            self.load.redis,
            self.load.duration,
            self.load.connections,
            self.listen
        )
    }

    /// The seed's counts; no audit events, since nothing here reads them.
    fn scale(&self) -> Scale {
        Scale {
            users: self.users,
            orgs: self.orgs,
            memberships: self.memberships,
            large_org_members: self.large_org_members,
            api_keys: self.api_keys,
            audit_events: 0,
        }
    }
}

/// Distinct rows each random-read script picks from.
const SAMPLE: u64 = 10_000;

/// What issue 19 asks of a figure (its Targets section).
#[derive(Debug, Clone, Copy)]
enum Target {
    /// The reference itself, or a figure shown for context.
    None,
    /// At least `share` of the mean `/healthz` rate and, where given, p99 under `p99_ms`.
    Healthz { share: f64, p99_ms: Option<f64> },
    /// At least `share` of the argon2id hash rate with one thread per core, `rate` (hashes/s,
    /// the mean of the timings before and after the run).
    HashRate { share: f64, rate: f64 },
}

const ENTITY_READ: Target = Target::Healthz {
    share: 0.50,
    p99_ms: Some(2.0),
};
const MEMBERS_PAGE: Target = Target::Healthz {
    share: 0.12,
    p99_ms: Some(10.0),
};
const REFRESH: Target = Target::Healthz {
    share: 0.08,
    p99_ms: None,
};
const COLD_KEY: Target = Target::Healthz {
    share: 0.14,
    p99_ms: None,
};
const LOGIN_OF_HASH_RATE: f64 = 0.95;

/// One line of the table.
struct Row {
    figure: String,
    rps: f64,
    p50: String,
    p99: String,
    target: Target,
}

impl Row {
    fn measured(figure: impl Into<String>, stats: &WrkStats, target: Target) -> Self {
        Self {
            figure: figure.into(),
            rps: stats.rps,
            p50: ms(&stats.p50),
            p99: ms(&stats.p99),
            target,
        }
    }

    /// The target and whether it was met, in words (empty for the reference rows).
    fn judged(&self, healthz: f64) -> (String, String) {
        match self.target {
            Target::None => (String::new(), String::new()),
            Target::Healthz { share, p99_ms } => {
                let rate_met = self.rps >= share * healthz;
                let (text, p99_met) = match p99_ms {
                    Some(max) => (
                        format!("≥ {:.0} %, p99 < {max} ms", 100.0 * share),
                        self.p99_ms().is_some_and(|p| p < max),
                    ),
                    None => (format!("≥ {:.0} %", 100.0 * share), true),
                };
                (text, verdict(rate_met && p99_met).to_owned())
            }
            Target::HashRate { share, rate } => (
                format!(
                    "≥ {:.0} % of the hash rate ({} hashes/s)",
                    100.0 * share,
                    thousands(rate)
                ),
                format!(
                    "{} ({:.0} %)",
                    verdict(self.rps >= share * rate),
                    100.0 * self.rps / rate
                ),
            ),
        }
    }

    fn p99_ms(&self) -> Option<f64> {
        self.p99.strip_suffix(" ms")?.parse().ok()
    }
}

/// A wrk latency (`680.00us`) as milliseconds, for the table.
fn ms(raw: &str) -> String {
    latency_ms(raw).map_or_else(|| raw.to_owned(), |v| format!("{v:.2} ms"))
}

/// `12345.6` as `12,346`.
fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(d);
    }
    out
}

pub fn run(args: ReadsBenchArgs) -> anyhow::Result<()> {
    let (root, work, rt) = prepare("reads")?;
    build_hash_time(&root)?;
    let scale = args.scale();
    let database_url = fresh_database("postgres", &work, &rt)?;

    let seeding = Instant::now();
    let (report, keys) = rt.block_on(seed::load_keeping_keys(
        &database_url,
        &scale,
        &work.join("data"),
        args.cold_keys,
    ))?;
    eprint!("{report}");
    let keys_file = write_script(&work, "cold-keys.txt", &(keys.join("\n") + "\n"))?;
    let tokens_file = work.join("refresh-tokens.txt");
    rt.block_on(seed_sessions(
        &database_url,
        &work.join("data/keys"),
        args.refresh_tokens,
        &tokens_file,
    ))?;
    let seed_secs = seeding.elapsed().as_secs_f64();
    eprintln!(
        "xtask: seeded in {seed_secs:.1} s (the store's rows, then {} sessions)",
        args.refresh_tokens
    );

    let prefix = format!("uos-bench-reads-{}:", std::process::id());
    let mut env = shared_state_env(&args.load.redis, &prefix)?;
    env.extend(LOCKOUT_OFF);
    let launch = Launch::new(&root, &work, &database_url, &args.listen, env);
    let server = launch.start()?;
    let base = launch.base.clone();
    let auth = format!("authorization: Bearer {}", admin_token(&base)?);
    let measure = |name: &str, header: &str, path: &str, script: Option<&Path>| {
        eprintln!("xtask: {name}");
        wrk_stats(
            args.load.connections,
            args.load.duration,
            &work,
            name,
            header,
            &format!("{base}{path}"),
            script,
        )
    };
    let mut runs: Vec<(&str, WrkStats)> = Vec::new();
    let mut rows = Vec::new();

    // The reference, measured at the start and at the end: its row, and its figures.
    let reference = |name: &str, when: &str| -> anyhow::Result<(Row, WrkStats)> {
        let stats = measure(name, &auth, "/healthz", None)?;
        let row = Row::measured(
            format!("`GET /healthz`, at the {when}"),
            &stats,
            Target::None,
        );
        Ok((row, stats))
    };
    let (row, healthz_start) = reference("healthz-start", "start")?;
    rows.push(row);
    runs.push(("healthz-start", healthz_start.clone()));

    let large = seed::org_slug(0);
    // A figure that reads one of up to SAMPLE rows at random per request: its words and paths.
    let random = |what: &str, route: &str, rows: u64, path: &dyn Fn(u64) -> String| {
        (
            format!(
                "{what}, `GET {route}` ({} random)",
                thousands(SAMPLE.min(rows) as f64)
            ),
            seed::spread(rows, SAMPLE).map(path).collect::<Vec<_>>(),
        )
    };
    let (user, users) = random("user by id", "/v1/users/{id}", scale.users, &|n| {
        format!("/v1/users/{}", id(Kind::User, n))
    });
    let (org, orgs) = random("org by slug", "/v1/orgs/{slug}", scale.orgs, &|n| {
        format!("/v1/orgs/{}", seed::org_slug(n))
    });
    let (member, members) = random(
        "member by id",
        &format!("/v1/orgs/{large}/users/{{user_id}}"),
        scale.large_org_members,
        &|n| format!("/v1/orgs/{large}/users/{}", id(Kind::User, n)),
    );
    let page = format!(
        "members page, `GET /v1/orgs/{large}/users?limit=20` ({} members)",
        thousands(scale.large_org_members as f64)
    );
    let reads = [
        ("user-by-id", "user-by-id-warm-up", user, users, ENTITY_READ),
        ("org-by-slug", "org-by-slug-warm-up", org, orgs, ENTITY_READ),
        (
            "member-by-id",
            "member-by-id-warm-up",
            member,
            members,
            ENTITY_READ,
        ),
        (
            "members-page",
            "members-page-warm-up",
            page,
            vec![format!("/v1/orgs/{large}/users?limit=20")],
            MEMBERS_PAGE,
        ),
    ];
    for (name, warm_name, figure, paths, target) in reads {
        // Answered once by hand first (curl -f fails on a 4xx): wrk would measure errors.
        let probe = curl_json(&["-f", &format!("{base}{}", paths[0]), "-H", &auth])?;
        if name == "members-page" && probe["items"].as_array().is_none_or(|i| i.len() != 20) {
            bail!("{} did not return 20 members: {probe}", paths[0]);
        }
        let (path, script) = if paths.len() == 1 {
            (paths[0].as_str(), None)
        } else {
            // The script sets each request's path; the URL only names the server.
            ("/", Some(random_paths_script(&work, name, paths.clone())?))
        };
        eprintln!("xtask: {warm_name}");
        let warm = wrk_stats(
            args.load.connections,
            args.warm_up,
            &work,
            warm_name,
            &auth,
            &format!("{base}{path}"),
            script.as_deref(),
        )?;
        let stats = measure(name, &auth, path, script.as_deref())?;
        rows.push(Row::measured(
            format!("{figure}: warm-up, {}s, first reads of each", args.warm_up),
            &warm,
            Target::None,
        ));
        rows.push(Row::measured(figure, &stats, target));
        runs.push((warm_name, warm));
        runs.push((name, stats));
    }

    let refresh = measure(
        "refresh",
        "accept: application/json",
        "/v1/auth/refresh",
        Some(&refresh_script(&work, &tokens_file)?),
    )?;
    rows.push(Row::measured(
        format!(
            "refresh, `POST /v1/auth/refresh` (each a distinct seeded token, of {})",
            thousands(f64::from(args.refresh_tokens))
        ),
        &refresh,
        REFRESH,
    ));
    let mut ran_out = Vec::new();
    if refresh.requests > u64::from(args.refresh_tokens) {
        ran_out.push(format!(
            "refresh: {} requests but {} tokens (raise --refresh-tokens)",
            refresh.requests, args.refresh_tokens
        ));
    }
    runs.push(("refresh", refresh));

    // A login is one argon2id hash, so the hash rate with one thread per core is its bound;
    // timed right before and right after the login run, as the machine drifts.
    let hash_before = time_hash(&root)?;
    let login = measure(
        "login",
        "accept: application/json",
        "/v1/auth/login",
        Some(&login_script(&work)?),
    )?;
    let hash_after = time_hash(&root)?;
    let hash_rate = (hash_before.per_sec + hash_after.per_sec) / 2.0;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    rows.push(Row {
        figure: format!(
            "argon2id hashes, one thread per core ({cores}), before and after the logins \
             (p50: one hash, one thread)"
        ),
        rps: hash_rate,
        p50: format!("{:.2} ms", (hash_before.ms + hash_after.ms) / 2.0),
        p99: "–".into(),
        target: Target::None,
    });
    rows.push(Row::measured(
        "password login, `POST /v1/auth/login` (argon2id, default parameters)",
        &login,
        Target::HashRate {
            share: LOGIN_OF_HASH_RATE,
            rate: hash_rate,
        },
    ));
    runs.push(("login", login));

    let (server, prime, cold) = cold_run(
        &launch,
        server,
        args.load.connections,
        args.cold_duration,
        &keys_file,
    )?;
    rows.push(Row::measured(
        format!(
            "cold API-key check, `GET /v1/auth/whoami` after a restart, each key once (-d{}s)",
            args.cold_duration
        ),
        &cold,
        COLD_KEY,
    ));
    let misses = cold_misses(&cold, args.cold_keys);
    if cold.requests > args.cold_keys {
        ran_out.push(format!("cold: {misses}"));
    }
    runs.push(("cold pool priming", prime));
    runs.push(("cold", cold));

    let (row, healthz_end) = reference("healthz-end", "end")?;
    rows.push(row);
    runs.push(("healthz-end", healthz_end.clone()));
    drop(server);

    let healthz = (healthz_start.rps + healthz_end.rps) / 2.0;
    let mut out = String::new();
    writeln!(
        out,
        "== bench-reads: {}, commit {}; {} users, {} orgs, {} memberships ({} in {large}), {} \
         API keys, {} refresh tokens, seeded in {seed_secs:.1} s; wrk -t1 -c{} -d{}s --latency \
         (cold run -d{}s); {cores} cores",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        commit(&root),
        thousands(scale.users as f64),
        thousands(scale.orgs as f64),
        thousands(scale.memberships as f64),
        thousands(scale.large_org_members as f64),
        thousands(scale.api_keys as f64),
        thousands(f64::from(args.refresh_tokens)),
        args.load.connections,
        args.load.duration,
        args.cold_duration,
    )?;
    writeln!(out, "command: {}", args.command())?;
    writeln!(
        out,
        "reference: /healthz {} req/s at the start, {} at the end ({:+.0} %); shares are of \
         their mean, {} req/s",
        thousands(healthz_start.rps),
        thousands(healthz_end.rps),
        100.0 * (healthz_end.rps / healthz_start.rps.max(1e-9) - 1.0),
        thousands(healthz),
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "| figure | req/s | p50 | p99 | of `/healthz` | target | verdict |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|")?;
    for row in &rows {
        let (target, met) = row.judged(healthz);
        writeln!(
            out,
            "| {} | {} | {} | {} | {:.1} % | {target} | {met} |",
            row.figure,
            thousands(row.rps),
            row.p50,
            row.p99,
            100.0 * row.rps / healthz.max(1e-9),
        )?;
    }
    writeln!(out)?;
    writeln!(out, "cold run: {misses}")?;
    let shown = work.canonicalize().unwrap_or_else(|_| work.clone());
    writeln!(out, "raw wrk outputs: {}/wrk-*.txt", shown.display())?;
    print!("{out}");
    std::fs::write(work.join("summary.txt"), &out)?;

    drop_database(&database_url, &rt)?;
    let mut failed = failed_runs(runs.iter().map(|(name, s)| (*name, s)));
    failed.extend(ran_out);
    if !failed.is_empty() {
        bail!(
            "runs that did not measure what they claim: {}",
            failed.join("; ")
        );
    }
    Ok(())
}

/// The commit measured, marked when the tree has changes on top of it: a results table names
/// what it measured.
fn commit(root: &Path) -> String {
    let git = |args: &[&str]| sh(Command::new("git").current_dir(root).args(args));
    let head =
        git(&["rev-parse", "--short", "HEAD"]).map_or_else(|_| "?".into(), |h| h.trim().to_owned());
    match git(&["status", "--porcelain", "--untracked-files=no"]) {
        Ok(changes) if !changes.trim().is_empty() => format!("{head} with uncommitted changes"),
        _ => head,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1_000.0), "1,000");
        assert_eq!(thousands(1_234_567.8), "1,234,568");
    }

    #[test]
    fn targets_are_judged_against_the_reference() {
        let row = |rps: f64, p99: &str, target| Row {
            figure: "f".into(),
            rps,
            p50: "1.00 ms".into(),
            p99: ms(p99),
            target,
        };
        let (text, met) = row(30_000.0, "1.50ms", ENTITY_READ).judged(50_000.0);
        assert_eq!((text.as_str(), met.as_str()), ("≥ 50 %, p99 < 2 ms", "met"));
        assert_eq!(
            row(30_000.0, "2.50ms", ENTITY_READ).judged(50_000.0).1,
            "MISSED"
        );
        assert_eq!(
            row(20_000.0, "900.00us", ENTITY_READ).judged(50_000.0).1,
            "MISSED"
        );
        assert_eq!(row(4_000.0, "9.00ms", REFRESH).judged(50_000.0).1, "met");
        let login = Target::HashRate {
            share: LOGIN_OF_HASH_RATE,
            rate: 100.0,
        };
        assert_eq!(row(96.0, "400ms", login).judged(50_000.0).1, "met (96 %)");
        assert_eq!(
            row(90.0, "400ms", login).judged(50_000.0).1,
            "MISSED (90 %)"
        );
        assert_eq!(row(1.0, "1ms", Target::None).judged(1.0).1, "");
    }
}
