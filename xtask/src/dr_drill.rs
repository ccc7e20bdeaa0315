//! `cargo xtask dr-drill`: a disaster-recovery rehearsal on the release binaries, PostgreSQL
//! by default (`--backend sqlite` too):
//!
//! 1. a fresh store and the admin-api on it, loaded through the API (`--orgs` orgs, each with
//!    invites and a service account), while a writer keeps creating service accounts and
//!    logs when each was acknowledged;
//! 2. `uosctl backup` in the middle of that load;
//! 3. the disaster: the admin-api killed, the database dropped (the SQLite file deleted) and
//!    the data directory with its key files deleted;
//! 4. `uosctl restore` into a clean database (it checks the restored rows per table and audit
//!    chain heads against the backup's manifest), and the admin-api started on it;
//! 5. the audit trail read back through the API and verified offline (`uosctl audit verify`)
//!    against the latest checkpoint the restored store holds.
//!
//! It prints the recovery point (acknowledged writes after the backup's snapshot are what a
//! restore of it loses: how many, and how long after the snapshot the last one was) and the
//! recovery time (from the disaster until the restored service answered and its trail
//! verified). Raw outputs stay in `target/bench/dr-drill/`.

use crate::bench::{
    admin_token, curl_json, drop_database, fresh_database, prepare, sh, start_server_with,
};
use anyhow::{bail, Context};
use clap::Args;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct DrDrillArgs {
    /// `postgres` or `sqlite`.
    #[arg(long, default_value = "postgres")]
    backend: String,
    /// Orgs created before the backup.
    #[arg(long, default_value_t = 50)]
    orgs: u32,
    /// Seconds of write load before the backup, and again after it until the disaster.
    #[arg(long, default_value_t = 3)]
    load_secs: u64,
    #[arg(long, default_value = "127.0.0.1:18188")]
    listen: String,
}

/// Checkpoints often enough that the backup holds some for the restored trail to be verified
/// against (the server is killed, so there is no checkpoint at shutdown).
const CHECKPOINTS: &[(&str, &str)] = &[("UOS_SERVICE__AUDIT_CHECKPOINT_EVERY_EVENTS", "100")];

/// `curl` a JSON body to `url` as `auth`; the answer's status.
fn post(url: &str, auth: &str, body: &serde_json::Value) -> anyhow::Result<u16> {
    let out = sh(Command::new("curl").args([
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        auth,
        "-H",
        "content-type: application/json",
        "-d",
        &body.to_string(),
        url,
    ]))?;
    out.trim().parse().context("curl printed no status")
}

fn created(status: u16, what: &str) -> anyhow::Result<()> {
    if status != 201 {
        bail!("{what} answered {status}");
    }
    Ok(())
}

/// The writer's log: when each acknowledged write was acknowledged.
type Acks = Arc<Mutex<Vec<chrono::DateTime<chrono::Utc>>>>;

/// Create service accounts in `org-0` until `stop`, logging each acknowledgement.
fn writer(base: String, auth: String, stop: Arc<AtomicBool>, acks: Acks) -> anyhow::Result<()> {
    let url = format!("{base}/v1/orgs/org-0/service-accounts");
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let body = serde_json::json!({"name": format!("load-{i}"), "roles": ["member"]});
        created(post(&url, &auth, &body)?, "a service account under load")?;
        acks.lock()
            .map_err(|_| anyhow::anyhow!("ack log poisoned"))?
            .push(chrono::Utc::now());
    }
    Ok(())
}

pub fn run(args: DrDrillArgs) -> anyhow::Result<()> {
    let (root, work, rt) = prepare("dr-drill")?;
    let uosctl = crate::release::build(&root, "uosctl")?;
    let database_url = fresh_database(&args.backend, &work, &rt)?;
    let base = format!("http://{}", args.listen);
    let start = |url: &str| start_server_with(&root, &work, url, &args.listen, &base, CHECKPOINTS);
    // How uosctl reaches the store and the key files at `url`.
    let store_env = |url: &str| {
        [
            ("UOS_DATABASE_URL", url.to_owned()),
            ("UOS_DATA_DIR", work.join("data").display().to_string()),
        ]
    };
    let server = start(&database_url)?;
    let auth = format!("authorization: Bearer {}", admin_token(&base)?);

    for i in 0..args.orgs {
        let slug = format!("org-{i}");
        let body = serde_json::json!({"slug": slug, "display_name": format!("Org {i}")});
        created(post(&format!("{base}/v1/orgs"), &auth, &body)?, "an org")?;
        for who in ["ann", "bob"] {
            let body =
                serde_json::json!({"email": format!("{who}-{i}@example.com"), "roles": ["member"]});
            created(
                post(&format!("{base}/v1/orgs/{slug}/invites"), &auth, &body)?,
                "an invite",
            )?;
        }
        let body = serde_json::json!({"name": "ci", "roles": ["member"]});
        let url = format!("{base}/v1/orgs/{slug}/service-accounts");
        created(post(&url, &auth, &body)?, "a service account")?;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let acks: Acks = Arc::default();
    let load = {
        let (base, auth, stop, acks) = (base.clone(), auth.clone(), stop.clone(), acks.clone());
        std::thread::spawn(move || writer(base, auth, stop, acks))
    };
    std::thread::sleep(Duration::from_secs(args.load_secs));
    let backup = work.join("backup");
    let started = Instant::now();
    let out = sh(Command::new(&uosctl)
        .args(["backup", "--out", &backup.display().to_string()])
        .envs(store_env(&database_url)))?;
    let backup_secs = started.elapsed().as_secs_f64();
    print!("{out}");
    std::thread::sleep(Duration::from_secs(args.load_secs));

    // The disaster.
    stop.store(true, Ordering::Relaxed);
    load.join()
        .map_err(|_| anyhow::anyhow!("the writer panicked"))??;
    let disaster = Instant::now();
    drop(server);
    destroy(&database_url, &work, &rt)?;

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(backup.join("manifest.json"))?)?;
    let snapshot: chrono::DateTime<chrono::Utc> = manifest["created_at"]
        .as_str()
        .context("manifest without created_at")?
        .parse()?;
    // The clean target: a new database (the SQLite file's old place, now empty).
    let database_url = fresh_database(&args.backend, &work, &rt)?;
    let started = Instant::now();
    let out = sh(Command::new(&uosctl)
        .args(["restore", "--from", &backup.display().to_string()])
        .envs(store_env(&database_url)))?;
    let restore_secs = started.elapsed().as_secs_f64();
    print!("{out}");
    let _server = start(&database_url)?;
    let serving = disaster.elapsed().as_secs_f64();
    let auth = format!("authorization: Bearer {}", admin_token(&base)?);
    let events = verify_trail(&base, &auth, &work, &uosctl)?;
    let verified = disaster.elapsed().as_secs_f64();

    let acks = acks
        .lock()
        .map_err(|_| anyhow::anyhow!("ack log poisoned"))?
        .clone();
    let lost = acks.iter().filter(|t| **t > snapshot).count();
    let rpo = acks.last().map_or(0.0, |t| {
        (*t - snapshot).num_milliseconds().max(0) as f64 / 1000.0
    });
    let rows: i64 = manifest["row_counts"].as_object().map_or(0, |m| {
        m.values().filter_map(serde_json::Value::as_i64).sum()
    });
    println!(
        "dr-drill ({}): backup {backup_secs:.2} s of {rows} rows and {} audit chains, taken \
         under load ({} writes acknowledged in all)",
        args.backend,
        manifest["audit_heads"].as_array().map_or(0, Vec::len),
        acks.len()
    );
    println!(
        "RPO: {lost} acknowledged writes after the snapshot were lost, the last {rpo:.2} s \
         after it (a snapshot backup loses what follows it; WAL archiving bounds this, see \
         docs/runbooks/dr.md)"
    );
    println!(
        "RTO: restore {restore_secs:.2} s (inventory verified), serving {serving:.2} s after \
         the disaster, audit trail of {events} events verified {verified:.2} s after it"
    );
    drop_database(&database_url, &rt)
}

/// The store and the data directory gone: the database dropped (or its file deleted) and
/// the key files with it.
fn destroy(database_url: &str, work: &Path, rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    if database_url.starts_with("sqlite:") {
        for suffix in ["", "-wal", "-shm"] {
            let file = work.join(format!("uos.db{suffix}"));
            if file.exists() {
                std::fs::remove_file(file)?;
            }
        }
    } else {
        drop_database(database_url, rt)?;
    }
    std::fs::remove_dir_all(work.join("data"))?;
    Ok(())
}

/// Read the whole audit trail, the keys and the checkpoints back through the API and verify
/// them offline; the number of events.
fn verify_trail(base: &str, auth: &str, work: &Path, uosctl: &Path) -> anyhow::Result<u64> {
    let (events, count) = crate::bench_audit::export(base, auth, work)?;
    let get = |path: &str, file: &str| -> anyhow::Result<std::path::PathBuf> {
        let body = curl_json(&["-H", auth, &format!("{base}{path}")])?;
        let file = work.join(file);
        std::fs::write(&file, body.to_string())?;
        Ok(file)
    };
    let keys = get("/v1/audit/keys", "keys.json")?;
    let checkpoints = get("/v1/audit/checkpoints", "checkpoints.json")?;
    let out = sh(Command::new(uosctl).args([
        "audit",
        "verify",
        "--events",
        &events.display().to_string(),
        "--keys",
        &keys.display().to_string(),
        "--checkpoint",
        &checkpoints.display().to_string(),
    ]))?;
    std::fs::write(work.join("verify.txt"), out)?;
    Ok(count)
}
