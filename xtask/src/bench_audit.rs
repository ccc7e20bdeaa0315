//! `cargo xtask bench-audit`: the audit trail's figures against the release binaries on
//! PostgreSQL, each beside a reference measured in the same run:
//!
//! 1. `GET /healthz` with wrk (`-t1 -c<connections>`), the machine's reference rate;
//! 2. audited writes (`POST /v1/orgs/{slug}/service-accounts`, one row and one signed event
//!    each, never contending for a row) spread over `--orgs` orgs, then all into one org:
//!    events/s, and the gain of many chains over one; then the append alone, through the store
//!    port: `--connections` writers each sealing, signing and appending one event per
//!    transaction (from the head last written, locking the head row only when another writer
//!    moved it, as the service does), spread over `--orgs` chains, then into one;
//! 3. offline verification: the whole trail exported as NDJSON and checked by the release
//!    `uosctl audit verify` (events/s), beside `sha256sum` of the same file (MB/s);
//! 4. the relay: the server restarted with a tansu broker configured drains the backlog
//!    (events/s into the broker);
//! 5. commit-to-broker latency: a lighter write load (`-c4`) while a consumer reads the topic
//!    from its end (what the relay drained before is not read first);
//!    for each event of the load, the time from `occurred_at` (before its commit) to its
//!    arrival at the consumer (an upper bound of commit-to-broker), p50 and p99;
//! 6. a large export: `--export-events` synthetic rows (copies of one real event's payload,
//!    inserted with SQL in one chain of their own: the export streams rows and verifies
//!    nothing, so they need no valid signatures) exported through `POST /v1/audit/exports` and
//!    downloaded, with the server's resident memory sampled before, during and after.
//!
//! Raw outputs stay in `target/bench/audit/`.

use crate::bench::{
    admin_token, curl_json, drop_database, fresh_database, metric, prepare, sh, start_server_with,
    wrk_stats,
};
use anyhow::{bail, Context};
use clap::Args;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};
use uos_events::testing::{consume_new, Broker};

#[derive(Debug, Args)]
pub struct AuditBenchArgs {
    /// Orgs the spread writes go to.
    #[arg(long, default_value_t = 100)]
    orgs: u32,
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 15)]
    duration: u32,
    #[arg(long, default_value_t = 32)]
    connections: u32,
    #[arg(long, default_value = "127.0.0.1:18184")]
    listen: String,
    /// Synthetic events added for the export memory measurement (0: skip it).
    #[arg(long, default_value_t = 1_000_000)]
    export_events: u64,
}

/// wrk script: a new service account per request, in org `o000`..`o<n-1>` in turn. A run
/// owns its names (`<run>-<n>`), so runs never collide.
fn write_lua(orgs: u32, run: &str) -> String {
    format!(
        r#"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  local path = string.format("/v1/orgs/o%03d/service-accounts", n % {orgs})
  local body = string.format('{{"name":"{run}-%d","roles":["member"]}}', n)
  return wrk.format(nil, path, nil, body)
end
"#
    )
}

pub fn run(args: AuditBenchArgs) -> anyhow::Result<()> {
    // The relay and latency runs need the broker; installed first, so a run outside `ci`
    // cannot measure for minutes and then fail where it starts one.
    crate::services::ensure_kafka_broker()?;
    let (root, work, rt) = prepare("audit")?;
    let uosctl = crate::release::build(&root, "uosctl")?;
    eprintln!("xtask: building the audit append bench");
    audit_append_cargo(&root, "build", &[])?;
    let database_url = fresh_database("postgres", &work, &rt)?;
    let base = format!("http://{}", args.listen);
    let mut lines = Vec::new();
    {
        let _server = start_server_with(&root, &work, &database_url, &args.listen, &base, &[])?;
        let token = admin_token(&base)?;
        let auth = format!("Authorization: Bearer {token}");
        for i in 0..args.orgs {
            let body = format!(r#"{{"slug":"o{i:03}","display_name":"o{i:03}"}}"#);
            curl_json(&[
                &format!("{base}/v1/orgs"),
                "-H",
                &auth,
                "-H",
                "content-type: application/json",
                "-d",
                &body,
            ])?;
        }
        let healthz = wrk_stats(
            args.connections,
            args.duration,
            &work,
            "healthz",
            "Accept: */*",
            &format!("{base}/healthz"),
            None,
        )?;
        lines.push(format!("GET /healthz (reference): {healthz}"));
        let mut rates = Vec::new();
        for orgs in [args.orgs, 1] {
            let script = work.join(format!("write-{orgs}.lua"));
            std::fs::write(&script, write_lua(orgs, &format!("w{orgs}")))?;
            let stats = wrk_stats(
                args.connections,
                args.duration,
                &work,
                &format!("write-{orgs}"),
                &auth,
                &base,
                Some(&script),
            )?;
            if stats.errors() > 0 {
                bail!("audited writes into {orgs} orgs failed: {stats}");
            }
            lines.push(format!(
                "audited writes into {orgs} org(s): {stats} ({:.1}% of /healthz)",
                100.0 * stats.rps / healthz.rps
            ));
            rates.push(stats.rps);
        }
        lines.push(format!(
            "many chains over one: {:.2}x events/s",
            rates[0] / rates[1]
        ));
        // A database of its own: these events are signed by a key the server does not publish.
        let append_db = fresh_database("postgres", &work, &rt)?;
        let mut appends = Vec::new();
        for chains in [args.orgs, 1] {
            let (rate, moved) =
                store_appends(&root, &append_db, chains, args.connections, args.duration)?;
            lines.push(format!(
                "signed appends through the store port into {chains} chain(s), {} writers: \
                 {rate:.0} events/s ({:.1}% of /healthz), {moved} found their head moved",
                args.connections,
                100.0 * rate / healthz.rps
            ));
            appends.push(rate);
        }
        lines.push(format!(
            "appends, many chains over one: {:.2}x",
            appends[0] / appends[1]
        ));
        drop_database(&append_db, &rt)?;

        let (file, count) = export(&base, &auth, &work)?;
        let keys = work.join("keys.json");
        std::fs::write(
            &keys,
            sh(Command::new("curl").args(["-sS", "-H", &auth, &format!("{base}/v1/audit/keys")]))?,
        )?;
        let started = Instant::now();
        let out = sh(Command::new(&uosctl).args([
            "audit",
            "verify",
            "--events",
            &file.display().to_string(),
            "--keys",
            &keys.display().to_string(),
        ]))?;
        let verify = started.elapsed();
        std::fs::write(work.join("verify.txt"), &out)?;
        let started = Instant::now();
        sh(Command::new("sha256sum").arg(&file))?;
        let sha = started.elapsed();
        let megabytes = std::fs::metadata(&file)?.len() as f64 / 1e6;
        lines.push(format!(
            "offline verification (uosctl audit verify): {count} events in {:.2}s = {:.0} events/s; \
             sha256sum of the same {megabytes:.0} MB: {:.0} MB/s",
            verify.as_secs_f64(),
            count as f64 / verify.as_secs_f64(),
            megabytes / sha.as_secs_f64()
        ));
    }

    let broker = Broker::start();
    let started = Instant::now();
    let env = [
        ("UOS_KAFKA__BROKERS", broker.address.as_str()),
        ("UOS_KAFKA__MESSAGE_TIMEOUT_SECS", "10"),
    ];
    let server = start_server_with(&root, &work, &database_url, &args.listen, &base, &env)?;
    let (first, first_at) = first_published(&base, Duration::from_secs(60))?;
    let backlog = drained(&base, Duration::from_secs(600))?;
    let relay = started.elapsed();
    let draining = first_at.elapsed();
    lines.push(format!(
        "relay: a backlog of {backlog} events into the broker in {:.2}s = {:.0} events/s with \
         server start; {:.0} events/s from the first acknowledged batch ({first} events) on",
        relay.as_secs_f64(),
        backlog as f64 / relay.as_secs_f64(),
        (backlog - first) as f64 / draining.as_secs_f64()
    ));

    let token = admin_token(&base)?;
    let auth = format!("Authorization: Bearer {token}");
    let brokers = broker.address.clone();
    let consumer = std::thread::spawn(move || {
        consume_new(
            &brokers,
            "uos.audit.v1",
            usize::MAX,
            Duration::from_secs(u64::from(args.duration) + 20),
        )
    });
    // The consumer reads from the end of the topic once assigned; events of the load that
    // occurred before then are not counted (see the filter below).
    std::thread::sleep(Duration::from_secs(2));
    let load_start = SystemTime::now();
    let script = work.join("write-latency.lua");
    std::fs::write(&script, write_lua(args.orgs, "latency"))?;
    let load = wrk_stats(
        4,
        args.duration,
        &work,
        "write-latency",
        &auth,
        &base,
        Some(&script),
    )?;
    let received = consumer
        .join()
        .map_err(|_| anyhow::anyhow!("the consumer panicked"))?;
    let mut latencies: Vec<f64> = received
        .iter()
        .filter_map(|m| {
            let occurred =
                chrono::DateTime::parse_from_rfc3339(m.value["occurred_at"].as_str()?).ok()?;
            let occurred = SystemTime::UNIX_EPOCH
                + Duration::from_micros(u64::try_from(occurred.timestamp_micros()).ok()?);
            (occurred >= load_start)
                .then(|| m.received_at.duration_since(occurred).ok())
                .flatten()
                .map(|d| d.as_secs_f64() * 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    if latencies.is_empty() {
        bail!("no event of the latency load reached the consumer");
    }
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    lines.push(format!(
        "commit-to-broker (occurred_at to consumer) under {:.0} writes/s: {} events, p50 {:.1} ms, \
         p99 {:.1} ms, max {:.1} ms",
        load.rps,
        latencies.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    ));
    drop(server);
    if args.export_events > 0 {
        lines.push(export_memory(&root, &work, &database_url, &args, &base)?);
    }
    drop_database(&database_url, &rt)?;

    let summary = lines.join("\n");
    std::fs::write(work.join("summary.txt"), &summary)?;
    println!("{summary}");
    println!(
        "reproduce: cargo xtask bench-audit --orgs {} --duration {} --connections {} --listen {} \
         --export-events {}",
        args.orgs, args.duration, args.connections, args.listen, args.export_events
    );
    Ok(())
}

/// Every audit event `base` serves, as NDJSON in `work`: (file, count).
pub(crate) fn export(
    base: &str,
    auth: &str,
    work: &Path,
) -> anyhow::Result<(std::path::PathBuf, u64)> {
    let file = work.join("events.ndjson");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file)?);
    let mut count = 0u64;
    let mut next: Option<String> = None;
    loop {
        let url = match &next {
            Some(t) => format!("{base}/v1/audit/events?limit=100&page_token={t}"),
            None => format!("{base}/v1/audit/events?limit=100"),
        };
        let page = curl_json(&["-H", auth, &url])?;
        let items = page["items"]
            .as_array()
            .with_context(|| format!("{url} did not answer a list: {page}"))?;
        for item in items {
            use std::io::Write as _;
            serde_json::to_writer(&mut out, item)?;
            out.write_all(b"\n")?;
            count += 1;
        }
        match page["next_page_token"].as_str() {
            Some(t) => next = Some(t.to_string()),
            None => break,
        }
    }
    Ok((file, count))
}

/// Phase 2, the append alone: the `audit_append` example of `uos-store-postgres`, built in
/// release mode like the service (see its header): events/s and how many appends found their
/// head moved by another writer.
fn store_appends(
    root: &Path,
    url: &str,
    chains: u32,
    writers: u32,
    secs: u32,
) -> anyhow::Result<(f64, u64)> {
    let args = [
        url.to_owned(),
        chains.to_string(),
        writers.to_string(),
        secs.to_string(),
    ];
    let out = audit_append_cargo(root, "run", &args)?;
    let mut fields = out.split_whitespace();
    let (Some(rate), Some(moved), None) = (fields.next(), fields.next(), fields.next()) else {
        bail!("audit_append printed {out:?}");
    };
    Ok((rate.parse()?, moved.parse()?))
}

/// The `audit_append` example: `build` it, or `run` it with `args`.
fn audit_append_cargo(root: &Path, verb: &str, args: &[String]) -> anyhow::Result<String> {
    crate::release::example(root, "uos-store-postgres", "audit_append", verb, args)
}

/// Phase 6: `args.export_events` synthetic rows, one export job of the whole trail and its
/// download, with the server's resident memory sampled every 100 ms.
fn export_memory(
    root: &Path,
    work: &Path,
    database_url: &str,
    args: &AuditBenchArgs,
    base: &str,
) -> anyhow::Result<String> {
    let n = args.export_events;
    sh(Command::new("psql").args([
        database_url,
        "-qc",
        &format!(
            "insert into audit_event (seq, audit_event_id, occurred_at, actor_id, action, \
             target_id, hash, payload, chain) \
             select g, gen_random_uuid(), now(), 'bench', 'bench.synthetic', 'bench', 'synthetic', \
             (select payload from audit_event order by position limit 1), 'bench:export' \
             from generate_series(1, {n}) g; \
             insert into audit_chain (chain, seq, hash) values ('bench:export', {n}, 'synthetic')"
        ),
    ]))?;
    let server = start_server_with(root, work, database_url, &args.listen, base, &[])?;
    let token = admin_token(base)?;
    let auth = format!("Authorization: Bearer {token}");
    let before = crate::bench::rss_mb(server.pid())?;
    let started = Instant::now();
    let job = curl_json(&[
        "-X",
        "POST",
        "-H",
        &auth,
        "-H",
        "content-type: application/json",
        "-d",
        "{}",
        &format!("{base}/v1/audit/exports"),
    ])?;
    let id = job["id"]
        .as_str()
        .with_context(|| format!("no export id: {job}"))?;
    let mut peak = before;
    let written = loop {
        peak = peak.max(crate::bench::rss_mb(server.pid())?);
        let status = curl_json(&["-H", &auth, &format!("{base}/v1/audit/exports/{id}")])?;
        match status["status"].as_str() {
            Some("done") => break status["events_written"].as_u64().unwrap_or(0),
            Some("failed") => bail!("the export failed: {status}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    let job_time = started.elapsed();
    let file = work.join("export.ndjson");
    let mut download = Command::new("curl")
        .args(["-sS", "-o", &file.display().to_string(), "-H", &auth])
        .arg(format!("{base}/v1/audit/exports/{id}/download"))
        .spawn()?;
    let mut download_peak = crate::bench::rss_mb(server.pid())?;
    while download.try_wait()?.is_none() {
        download_peak = download_peak.max(crate::bench::rss_mb(server.pid())?);
        std::thread::sleep(Duration::from_millis(100));
    }
    let megabytes = std::fs::metadata(&file)?.len() as f64 / 1e6;
    let _ = std::fs::remove_file(&file);
    Ok(format!(
        "export of {written} events ({megabytes:.0} MB): job {:.1}s ({:.0} events/s); server RSS \
         {before:.0} MB before, peak {peak:.0} MB during the job, peak {download_peak:.0} MB \
         while downloading, {:.0} MB after",
        job_time.as_secs_f64(),
        written as f64 / job_time.as_secs_f64(),
        crate::bench::rss_mb(server.pid())?
    ))
}

/// Waits until the relay acknowledged its first events: how many, and when that was seen.
fn first_published(base: &str, timeout: Duration) -> anyhow::Result<(u64, Instant)> {
    let deadline = Instant::now() + timeout;
    loop {
        let published = metric(base, "uos_audit_relay_published_total")?;
        if published > 0.0 {
            return Ok((published as u64, Instant::now()));
        }
        if Instant::now() > deadline {
            bail!("the relay published nothing");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until the relay has nothing behind and published something; how many it published.
fn drained(base: &str, timeout: Duration) -> anyhow::Result<u64> {
    let deadline = Instant::now() + timeout;
    loop {
        let published = metric(base, "uos_audit_relay_published_total")?;
        let behind = metric(base, "uos_audit_relay_behind_events")?;
        if published > 0.0 && behind == 0.0 {
            return Ok(published as u64);
        }
        if Instant::now() > deadline {
            bail!("the relay did not drain: {published} published, {behind} behind");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
