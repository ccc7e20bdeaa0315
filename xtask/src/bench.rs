//! `cargo xtask bench`: seed an org with many members, then measure p50/p99 of listing members
//! and of creating invites with wrk against the release binary, on SQLite or PostgreSQL.
//!
//! Reproducible: a fresh data dir and database each run, a fixed seed size, fixed wrk settings
//! (`-t1 -c32 -d15s --latency` by default).

use crate::services;
use anyhow::{bail, Context};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uos_domain::{Email, Membership, RoleName, User, UserStatus};
use uos_store::Store;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// `sqlite` or `postgres`.
    #[arg(long, default_value = "sqlite")]
    backend: String,
    /// Members to seed into the benchmark org.
    #[arg(long, default_value_t = 100_000)]
    users: u32,
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 15)]
    duration: u32,
    /// Concurrent wrk connections.
    #[arg(long, default_value_t = 32)]
    connections: u32,
    #[arg(long, default_value = "127.0.0.1:18181")]
    listen: String,
}

/// The flags the wrk benches against the server share: its shared state and the load.
#[derive(Debug, Args)]
pub(crate) struct Load {
    /// Shared state for the server (`redis://…`); empty for the in-process default.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub(crate) redis: String,
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 15)]
    pub(crate) duration: u32,
    /// Concurrent wrk connections.
    #[arg(long, default_value_t = 32)]
    pub(crate) connections: u32,
}

/// The allocator settings the container image sets (`Dockerfile`): the benches run the server
/// as it is deployed. mimalloc keeps memory it freed (the 19 MiB of a password hash, the
/// buffers of a burst of connections) committed, and its eagerly committed arena releases
/// pages lazily, so the resident size stays at its high-water mark; with both off, freed
/// memory goes back to the system at once.
pub(crate) const IMAGE_ENV: [(&str, &str); 2] = [
    ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
    ("MIMALLOC_PURGE_DELAY", "0"),
];

pub(crate) const ADMIN: &str = "bench-admin@example.com";
pub(crate) const PASSWORD: &str = "bench admin password";

pub(crate) struct Server(Child);

impl Server {
    pub(crate) fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn sh(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(crate) fn ensure_wrk() -> anyhow::Result<()> {
    if Command::new("wrk").arg("--version").output().is_ok() {
        return Ok(());
    }
    eprintln!("xtask: installing wrk from Debian's packages");
    if !services::apt_get(&["install", "-y", "-qq", "wrk"], Path::new("."))? {
        bail!("could not install wrk with apt-get");
    }
    Ok(())
}

/// Resident memory of process `pid` now, MB.
pub(crate) fn rss_mb(pid: u32) -> anyhow::Result<f64> {
    status_mb(pid, "VmRSS").context("no VmRSS")
}

/// The peak resident memory of process `pid` so far, MB.
pub(crate) fn peak_rss_mb(pid: u32) -> Option<f64> {
    status_mb(pid, "VmHWM")
}

/// A memory figure (`VmRSS`, `VmHWM`, in kB there) of `/proc/<pid>/status`, in MB.
fn status_mb(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

pub(crate) fn curl_json(args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let out = sh(Command::new("curl").arg("-sS").args(args))?;
    serde_json::from_str(&out).with_context(|| format!("response was not JSON: {out}"))
}

/// The value of the unlabelled metric `name` on the server's `/metrics`.
pub(crate) fn metric(base: &str, name: &str) -> anyhow::Result<f64> {
    let text = sh(Command::new("curl").args(["-sS", &format!("{base}/metrics")]))?;
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .with_context(|| format!("/metrics has no {name}"))?
        .trim()
        .parse()
        .with_context(|| format!("{name} is not a number"))
}

/// What every benchmark starts with: wrk, the release binary, an empty work dir
/// (`target/bench/<name>`) and a runtime for seeding. Returns (workspace root, work dir, runtime).
pub(crate) fn prepare(name: &str) -> anyhow::Result<(PathBuf, PathBuf, tokio::runtime::Runtime)> {
    ensure_wrk()?;
    let root = crate::release::workspace_root();
    crate::release::build(&root, "admin-api")?;
    let work = root.join("target/bench").join(name);
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    Ok((root, work, runtime()?))
}

/// The runtime the tasks seed and measure with: two workers, like the machine's two cores.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let (root, work, rt) = prepare(&args.backend)?;

    let database_url = fresh_database(&args.backend, &work, &rt)?;
    let base = format!("http://{}", args.listen);
    let _server = start_server(&root, &work, &database_url, &args.listen, &base)?;

    let token = admin_token(&base)?;
    let auth = format!("authorization: Bearer {token}");
    curl_json(&[
        &format!("{base}/v1/orgs"),
        "-H",
        &auth,
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"slug":"bench","display_name":"Bench"}"#,
    ])?;

    let started = Instant::now();
    rt.block_on(seed(&database_url, args.users))?;
    eprintln!(
        "xtask: seeded {} members in {:.1}s",
        args.users,
        started.elapsed().as_secs_f64()
    );

    let list = wrk(
        &args,
        &work,
        &auth,
        &format!("{base}/v1/orgs/bench/users?limit=50"),
        None,
    )?;
    let script = work.join("invite.lua");
    std::fs::write(&script, INVITE_LUA)?;
    let invite = wrk(
        &args,
        &work,
        &auth,
        &format!("{base}/v1/orgs/bench/invites"),
        Some(&script),
    )?;

    println!(
        "backend={} members={} wrk -t1 -c{} -d{}s",
        args.backend, args.users, args.connections, args.duration
    );
    println!("GET  /v1/orgs/bench/users?limit=50  {list}");
    println!("POST /v1/orgs/bench/invites         {invite}");
    drop_database(&database_url, &rt)
}

/// Log the benchmark admin in; its access token.
pub(crate) fn admin_token(base: &str) -> anyhow::Result<String> {
    let login = curl_json(&[
        &format!("{base}/v1/auth/login"),
        "-H",
        "content-type: application/json",
        "-d",
        &serde_json::json!({"email": ADMIN, "password": PASSWORD}).to_string(),
    ])?;
    Ok(login["access_token"]
        .as_str()
        .context("login returned no token")?
        .to_string())
}

/// A new, empty database for one run: a SQLite file in `work`, or a fresh PostgreSQL database.
pub(crate) fn fresh_database(
    backend: &str,
    work: &Path,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<String> {
    Ok(match backend {
        "sqlite" => format!("sqlite://{}/uos.db", work.display()),
        "postgres" => {
            services::ensure_postgres()?;
            rt.block_on(uos_store_postgres::testing::fresh_database(
                &services::postgres_admin_url(),
            ))?
        }
        other => bail!("unknown backend {other}: use sqlite or postgres"),
    })
}

/// Drop a run's PostgreSQL database (a SQLite file goes with the work dir of the next run).
pub(crate) fn drop_database(url: &str, rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    if url.starts_with("postgres") {
        rt.block_on(uos_store_postgres::testing::drop_database(
            &services::postgres_admin_url(),
            url,
        ))?;
    }
    Ok(())
}

/// The store behind `url`, for seeding; a small pool is plenty.
pub(crate) async fn open_store(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    Ok(if url.starts_with("sqlite:") {
        Arc::new(uos_store_sqlite::SqliteStore::open(url).await?)
    } else {
        Arc::new(uos_store_postgres::PgStore::connect(url, 4).await?)
    })
}

pub(crate) fn start_server(
    root: &Path,
    work: &Path,
    database_url: &str,
    listen: &str,
    base: &str,
) -> anyhow::Result<Server> {
    start_server_with(root, work, database_url, listen, base, &[])
}

/// The server binary a bench measures: `XTASK_BENCH_BINARY` when set (the previous release,
/// say, measured by the same harness in the same session as this one), else this workspace's
/// release build. Not `UOS_`-prefixed: the server inherits the environment and refuses
/// unknown `UOS_` keys.
fn server_binary(root: &Path) -> anyhow::Result<std::path::PathBuf> {
    match std::env::var_os("XTASK_BENCH_BINARY") {
        Some(path) => Ok(path.into()),
        None => crate::release::binary(root, "admin-api"),
    }
}

/// A benchmark's server: how to (re)start it, for the benches that restart it to empty its
/// caches.
pub(crate) struct Launch<'a> {
    pub(crate) root: &'a Path,
    pub(crate) work: &'a Path,
    pub(crate) database_url: &'a str,
    pub(crate) listen: &'a str,
    /// `http://` and `listen`.
    pub(crate) base: String,
    pub(crate) env: Vec<(&'a str, &'a str)>,
}

impl<'a> Launch<'a> {
    /// The server on `database_url` at `listen`, with `env` on top of the benches' settings.
    pub(crate) fn new(
        root: &'a Path,
        work: &'a Path,
        database_url: &'a str,
        listen: &'a str,
        env: Vec<(&'a str, &'a str)>,
    ) -> Self {
        Self {
            root,
            work,
            database_url,
            listen,
            base: format!("http://{listen}"),
            env,
        }
    }

    pub(crate) fn start(&self) -> anyhow::Result<Server> {
        start_server_with(
            self.root,
            self.work,
            self.database_url,
            self.listen,
            &self.base,
            &self.env,
        )
    }
}

/// The settings that give a benchmark's server its shared state: Redis (`redis`, started if it
/// is not running) under `prefix`, so runs never see each other's keys; `redis` empty for the
/// in-process default.
pub(crate) fn shared_state_env<'a>(
    redis: &'a str,
    prefix: &'a str,
) -> anyhow::Result<Vec<(&'a str, &'a str)>> {
    let mut env = vec![("UOS_REDIS_PREFIX", prefix)];
    if !redis.is_empty() {
        services::ensure_redis()?;
        env.push(("UOS_REDIS_URL", redis));
    }
    Ok(env)
}

/// Write a wrk script (or a file one reads) into the work dir; its path.
pub(crate) fn write_script(work: &Path, name: &str, text: &str) -> anyhow::Result<PathBuf> {
    let path = work.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

/// A wrk script that requests, each time, one of `paths` picked at random: reads spread over
/// many rows, as an admin console's are, not one row served from every cache on the way. The
/// paths go to `<name>.txt` and the script to `<name>.lua` in the work dir.
pub(crate) fn random_paths_script(
    work: &Path,
    name: &str,
    paths: impl IntoIterator<Item = String>,
) -> anyhow::Result<PathBuf> {
    let list = write_script(
        work,
        &format!("{name}.txt"),
        &paths.into_iter().map(|p| p + "\n").collect::<String>(),
    )?;
    write_script(
        work,
        &format!("{name}.lua"),
        &RANDOM_PATHS_LUA.replace("PATHS", &list.display().to_string()),
    )
}

const RANDOM_PATHS_LUA: &str = r#"
-- Each request reads a path picked at random from the saved ones (the path set per request;
-- the Authorization header comes from -H).
local paths = {}
for line in io.lines("PATHS") do paths[#paths + 1] = line end
request = function()
  return wrk.format(nil, paths[math.random(#paths)])
end
"#;

/// `met` or `MISSED`, for a target's verdict.
pub(crate) fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

/// The runs that had a non-2xx response or a socket error, one line each: any makes a
/// benchmark fail, since its figures would then include answers that were not the work asked.
pub(crate) fn failed_runs<'a>(
    runs: impl IntoIterator<Item = (&'a str, &'a WrkStats)>,
) -> Vec<String> {
    runs.into_iter()
        .filter(|(_, s)| s.errors() > 0)
        .map(|(name, s)| {
            format!(
                "{name}: {} non-2xx, {} socket errors",
                s.non2xx, s.socket_errors
            )
        })
        .collect()
}

/// Start the server binary with extra `UOS_` settings and wait until it is ready.
pub(crate) fn start_server_with(
    root: &Path,
    work: &Path,
    database_url: &str,
    listen: &str,
    base: &str,
    env: &[(&str, &str)],
) -> anyhow::Result<Server> {
    // Appended to: a bench that restarts the server keeps every run's warnings.
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(work.join("admin-api.log"))?;
    let mut cmd = Command::new(server_binary(root)?);
    // The benches measure the handlers at rates far beyond the tight limits on login and
    // invites, so rate limits are off unless a run sets them itself. A previous release given
    // as XTASK_BENCH_BINARY may not know the key (and would refuse it), so it gets none.
    let sets_rate_limits = env.iter().any(|(k, _)| k.starts_with("UOS_RATE_LIMIT__"));
    if !sets_rate_limits && std::env::var_os("XTASK_BENCH_BINARY").is_none() {
        cmd.env("UOS_RATE_LIMIT__ENABLED", "false");
    }
    let child = cmd
        .envs(IMAGE_ENV)
        .envs(env.iter().copied())
        .env("UOS_DATABASE_URL", database_url)
        .env("UOS_DATA_DIR", work.join("data"))
        .env("UOS_LISTEN", listen)
        .env("UOS_BOOTSTRAP_ADMIN_EMAIL", ADMIN)
        .env("UOS_BOOTSTRAP_ADMIN_PASSWORD", PASSWORD)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting admin-api")?;
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let ok = Command::new("curl")
            .args(["-sf", &format!("{base}/readyz")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return Ok(server);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!(
        "admin-api did not become ready; see {}",
        work.join("admin-api.log").display()
    )
}

/// Insert users and memberships straight through the store port, in batches of one
/// transaction each: seeding through the API would spend its time in argon2, not in what
/// the benchmark measures.
async fn seed(database_url: &str, users: u32) -> anyhow::Result<()> {
    let store = open_store(database_url).await?;
    let slug = uos_domain::OrgSlug::parse("bench")?;
    let org = store
        .read()
        .await?
        .get_org_by_slug(&slug)
        .await?
        .context("bench org missing")?;
    let member = RoleName::parse("member")?;
    let mut n = 0;
    while n < users {
        let mut tx = store.begin().await?;
        for _ in 0..1000.min(users - n) {
            let now = uos_domain::now();
            let u = User::new(
                Email::parse(&format!("member{n:06}@bench.test"))?,
                UserStatus::Active,
                now,
            );
            tx.insert_user(&u).await?;
            tx.insert_membership(&Membership::new(org.id, u.id, vec![member.clone()], now))
                .await?;
            n += 1;
        }
        tx.commit().await?;
    }
    store.close().await;
    Ok(())
}

const INVITE_LUA: &str = r#"
-- Each request invites a new address, so every POST creates a fresh invite. Headers go into
-- wrk.headers: a headers table passed to wrk.format would replace the Authorization header.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"email":"invitee%d-%d@bench.test","roles":["member"]}', n, math.random(1, 1000000000))
  return wrk.format(nil, nil, nil, body)
end
"#;

/// Run wrk and return its one-line summary ("req/s=… p50=… p99=… non-2xx=…").
fn wrk(
    args: &BenchArgs,
    work: &Path,
    auth: &str,
    url: &str,
    script: Option<&Path>,
) -> anyhow::Result<String> {
    let name = if script.is_some() { "invite" } else { "list" };
    Ok(wrk_stats(
        args.connections,
        args.duration,
        work,
        name,
        auth,
        url,
        script,
    )?
    .to_string())
}

/// Run wrk (`-t1 -c<connections> -d<duration>s --latency`, one header, an optional script) and
/// parse its figures; the raw output is kept as `wrk-<name>.txt` in the work dir.
pub(crate) fn wrk_stats(
    connections: u32,
    duration: u32,
    work: &Path,
    name: &str,
    header: &str,
    url: &str,
    script: Option<&Path>,
) -> anyhow::Result<WrkStats> {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t1",
        &format!("-c{connections}"),
        &format!("-d{duration}s"),
        "--latency",
        "-H",
        header,
    ]);
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    cmd.arg(url);
    let out = sh(&mut cmd)?;
    std::fs::write(work.join(format!("wrk-{name}.txt")), &out)?;
    WrkStats::parse(&out)
}

/// The second word of the first (trimmed) line of wrk's output that starts with `prefix`.
fn wrk_field<'a>(out: &'a str, prefix: &str) -> Option<&'a str> {
    out.lines()
        .map(str::trim)
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.split_whitespace().nth(1))
}

/// The figures of one wrk run, parsed from its output.
#[derive(Debug, Clone)]
pub(crate) struct WrkStats {
    /// Completed requests.
    pub(crate) requests: u64,
    pub(crate) rps: f64,
    /// As wrk prints them (`812.00us`, `1.52ms`).
    pub(crate) p50: String,
    pub(crate) p99: String,
    /// Responses with a status of 400 or more (wrk's "Non-2xx or 3xx responses").
    pub(crate) non2xx: u64,
    /// Connect, read and write errors and timeouts.
    pub(crate) socket_errors: u64,
}

impl WrkStats {
    pub(crate) fn parse(out: &str) -> anyhow::Result<Self> {
        let number = |prefix: &str| -> anyhow::Result<f64> {
            let raw = wrk_field(out, prefix)
                .with_context(|| format!("wrk printed no {prefix:?} line:\n{out}"))?;
            raw.parse::<f64>()
                .with_context(|| format!("wrk's {prefix:?} is not a number: {raw}"))
        };
        let requests = out
            .lines()
            .map(str::trim)
            .find(|l| l.contains(" requests in "))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .with_context(|| format!("wrk printed no request count:\n{out}"))?;
        let non2xx = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
            .map_or(Ok(0), |n| n.trim().parse::<u64>())?;
        // "Socket errors: connect 0, read 0, write 0, timeout 0"
        let socket_errors = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("Socket errors:"))
            .map_or(0, |rest| {
                rest.split(',')
                    .filter_map(|part| part.split_whitespace().nth(1))
                    .filter_map(|n| n.parse::<u64>().ok())
                    .sum()
            });
        let latency = |prefix: &str| -> anyhow::Result<String> {
            Ok(wrk_field(out, prefix)
                .with_context(|| format!("wrk printed no {prefix} latency:\n{out}"))?
                .to_string())
        };
        Ok(Self {
            requests,
            rps: number("Requests/sec:")?,
            p50: latency("50%")?,
            p99: latency("99%")?,
            non2xx,
            socket_errors,
        })
    }

    /// Responses that were not a success, plus socket errors.
    pub(crate) fn errors(&self) -> u64 {
        self.non2xx + self.socket_errors
    }

    pub(crate) fn p99_ms(&self) -> Option<f64> {
        latency_ms(&self.p99)
    }
}

impl std::fmt::Display for WrkStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "req/s={:.0} p50={} p99={} requests={} non-2xx={} socket-errors={}",
            self.rps, self.p50, self.p99, self.requests, self.non2xx, self.socket_errors
        )
    }
}

/// A wrk latency (`950.00us`, `1.20ms`, `2.01s`, `1.00m`) in milliseconds.
pub(crate) fn latency_ms(raw: &str) -> Option<f64> {
    let split = raw.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = raw.split_at(split);
    let n: f64 = n.parse().ok()?;
    match unit {
        "us" => Some(n / 1000.0),
        "ms" => Some(n),
        "s" => Some(n * 1000.0),
        "m" => Some(n * 60_000.0),
        "h" => Some(n * 3_600_000.0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const OUT: &str = "Running 15s test @ http://127.0.0.1:18183/v1/auth/whoami
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   710.21us  201.33us   9.80ms   90.12%
    Req/Sec    45.10k     1.20k   47.00k    80.00%
  Latency Distribution
     50%  680.00us
     75%  750.00us
     90%  850.00us
     99%    1.52ms
  673451 requests in 15.00s, 250.12MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:  44896.73
Transfer/sec:     16.67MB
";

    #[test]
    fn parses_wrk_output() {
        let s = WrkStats::parse(OUT).unwrap();
        assert_eq!(s.requests, 673_451);
        assert!((s.rps - 44_896.73).abs() < 1e-6);
        assert_eq!(s.p50, "680.00us");
        assert_eq!(s.p99, "1.52ms");
        assert_eq!((s.non2xx, s.socket_errors, s.errors()), (7, 5, 12));
        assert_eq!(latency_ms(&s.p50), Some(0.68));
        assert_eq!(s.p99_ms(), Some(1.52));
        let clean = OUT
            .lines()
            .filter(|l| !l.contains("Socket") && !l.contains("Non-2xx"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(WrkStats::parse(&clean).unwrap().errors(), 0);
        assert_eq!(latency_ms("2.5s"), Some(2500.0));
        assert_eq!(latency_ms("1.00m"), Some(60_000.0));
        assert_eq!(latency_ms("fast"), None);
    }

    #[test]
    fn the_benches_run_the_server_with_the_images_allocator_settings() {
        let dockerfile = include_str!("../../Dockerfile");
        for (key, value) in IMAGE_ENV {
            assert!(
                dockerfile.contains(&format!("{key}={value}")),
                "the Dockerfile does not set {key}={value}"
            );
        }
    }
}
