//! `cargo xtask seed`: a PostgreSQL database at production scale — by default 1,000,000 users,
//! 20,000 orgs, 2,000,000 memberships, 500,000 API keys and 1,000,000 signed audit events —
//! migrated by the project's migrator, loaded with `COPY … FROM STDIN` and analysed; then the
//! plan check of every list query at that scale (`plan_check`).
//!
//! Rows are built from the domain types (`User::new`, `Org::new`, …) and keys and events are
//! hashed and sealed by the service's own code with the key directory the server is then
//! started on, so the seeded data is what the service would have written: users answer
//! `GET /v1/users/{id}`, keys authenticate, audit chains verify. Ids are UUIDv7-shaped and
//! derived from a counter ([`id`]), so a benchmark names the n-th user or org without reading
//! the database back.
//!
//! The shape: org 0 (`scale-00000`) is the large org, with `--large-org-members` members (users
//! 0, 1, …) and a fifth of the audit events; the other memberships go round-robin over the
//! other orgs, each user at most once per org. Every org has one service account, and the API
//! keys are spread over them.

use crate::{bench, plan_check, services};
use anyhow::{bail, Context};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::Args;
use sqlx::{Connection, Executor, PgConnection};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;
use uos_domain::{
    ApiKeyId, Email, Membership, MembershipId, Org, OrgId, OrgSlug, Permission, RoleName,
    ServiceAccount, ServiceAccountId, User, UserId, UserStatus,
};
use uos_keys::KeyProvider as _;
use uos_store::Store as _;
use uuid::Uuid;

/// The counts of a seeded database.
#[derive(Debug, Clone, Args)]
pub struct Scale {
    #[arg(long, default_value_t = 1_000_000)]
    pub users: u64,
    #[arg(long, default_value_t = 20_000)]
    pub orgs: u64,
    #[arg(long, default_value_t = 2_000_000)]
    pub memberships: u64,
    /// Members of org 0 (`scale-00000`), the large org whose pages are measured; part of
    /// `--memberships`.
    #[arg(long, default_value_t = 200_000)]
    pub large_org_members: u64,
    #[arg(long, default_value_t = 500_000)]
    pub api_keys: u64,
    /// Signed, chained audit events; a fifth of them in the large org's chain.
    #[arg(long, default_value_t = 1_000_000)]
    pub audit_events: u64,
}

impl Scale {
    fn check(&self) -> anyhow::Result<()> {
        let spread = self.memberships.saturating_sub(self.large_org_members);
        if self.orgs < 2 || self.users == 0 {
            bail!("need --orgs ≥ 2 and --users ≥ 1");
        }
        if self.large_org_members > self.users || self.large_org_members > self.memberships {
            bail!("--large-org-members may not exceed --users or --memberships");
        }
        // Each user can be in each of the other orgs once.
        if spread > self.users * (self.orgs - 1) {
            bail!("--memberships is more than every user in every org");
        }
        Ok(())
    }

    /// The flags that reproduce these counts.
    pub fn flags(&self) -> String {
        format!(
            "--users {} --orgs {} --memberships {} --large-org-members {} --api-keys {} \
             --audit-events {}",
            self.users,
            self.orgs,
            self.memberships,
            self.large_org_members,
            self.api_keys,
            self.audit_events
        )
    }
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// An empty PostgreSQL database to migrate and fill, connected to as its owner or a
    /// superuser; by default a fresh one on the local cluster, kept afterwards.
    #[arg(long)]
    database_url: Option<String>,
    /// The server's data directory: its `keys/` hold the API-key pepper and the audit signing
    /// key the seeded rows are made with, so the server must be started with the same one
    /// (default `target/bench/seed/data`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Only the plan check, of the database `--database-url` seeded earlier with these counts.
    #[arg(long, requires = "database_url")]
    check_only: bool,
    #[command(flatten)]
    scale: Scale,
}

pub fn run(args: SeedArgs) -> anyhow::Result<()> {
    let rt = bench::runtime()?;
    let url = match args.database_url {
        Some(url) => url,
        None => {
            services::ensure_postgres()?;
            rt.block_on(uos_store_postgres::testing::fresh_database(
                &services::postgres_admin_url(),
            ))?
        }
    };
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    if !args.check_only {
        print!("{}", rt.block_on(load(&url, &args.scale, &data_dir))?);
    }
    let plans = rt.block_on(plan_check::run(&url, &args.scale))?;
    print!("{plans}");
    println!("seeded database (kept): {url}");
    println!("server data dir: {}", data_dir.display());
    plans.verdict()
}

/// Where `seed` keeps the server's keys unless told otherwise.
pub fn default_data_dir() -> PathBuf {
    crate::release::workspace_root().join("target/bench/seed/data")
}

/// Kinds of seeded ids; each has its own id space.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Org = 1,
    User = 2,
    Membership = 3,
    ServiceAccount = 4,
    ApiKey = 5,
    AuditEvent = 6,
}

/// 2026-01-01T00:00:00Z: the timestamp of every seeded id.
const ID_EPOCH_MS: u64 = 1_767_225_600_000;

/// The `n`-th seeded id of `kind` (n < 2^48): a UUIDv7 whose timestamp is fixed and whose
/// random bits hold the kind and the counter, so ids of a kind sort in counter order (keyset
/// pages walk them as they were created) and ids of two kinds never collide.
pub fn id(kind: Kind, n: u64) -> Uuid {
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&ID_EPOCH_MS.to_be_bytes()[2..]);
    b[6] = 0x70; // version 7
    b[7] = kind as u8;
    b[8] = 0x80; // RFC 4122 variant
    b[10..].copy_from_slice(&n.to_be_bytes()[2..]);
    Uuid::from_bytes(b)
}

/// Up to `count` distinct counters below `n`, spread over the whole range: a multiplicative
/// step, coprime with any `n` that is not a multiple of it, visits distinct values, so a
/// benchmark reads rows from all over a table, not its first pages.
pub fn spread(n: u64, count: u64) -> impl Iterator<Item = u64> {
    (0..count.min(n)).map(move |k| (k * 7_919 + 13) % n)
}

/// The slug of org `n`.
pub fn org_slug(n: u64) -> String {
    format!("scale-{n:05}")
}

/// The org of the `i`-th audit event: every fifth is the large org's.
pub fn audit_org(i: u64, orgs: u64) -> u64 {
    if i.is_multiple_of(5) {
        0
    } else {
        1 + i % (orgs - 1)
    }
}

/// The (org, user) of the `i`-th membership: the large org's members first, then the rest
/// round-robin — membership `large + j` puts user `j % users` into an org that moves by one
/// each time the users wrap around, so no user is in an org twice.
fn membership_of(i: u64, s: &Scale) -> (u64, u64) {
    if i < s.large_org_members {
        return (0, i);
    }
    let j = i - s.large_org_members;
    let (round, user) = (j / s.users, j % s.users);
    (1 + (round + user) % (s.orgs - 1), user)
}

/// Time of one table's load.
struct Loaded {
    table: &'static str,
    rows: u64,
    secs: f64,
}

/// Migrate the empty database at `url`, fill it and analyse it; the report says how long each
/// table took.
pub async fn load(url: &str, scale: &Scale, data_dir: &Path) -> anyhow::Result<String> {
    Ok(load_keeping_keys(url, scale, data_dir, 0).await?.0)
}

/// [`load`], keeping the texts of the first `keep` API keys (the rest are forgotten once
/// hashed): a benchmark that presents seeded keys needs them.
pub async fn load_keeping_keys(
    url: &str,
    scale: &Scale,
    data_dir: &Path,
    keep: u64,
) -> anyhow::Result<(String, Vec<String>)> {
    scale.check()?;
    if keep > scale.api_keys {
        bail!("cannot keep {keep} of {} API keys", scale.api_keys);
    }
    let mut kept = Vec::with_capacity(usize::try_from(keep)?);
    let keys = uos_keys::LocalKeyStore::open(&data_dir.join("keys"))
        .with_context(|| format!("opening the key directory in {}", data_dir.display()))?;
    let pepper = keys
        .secret("api-key-pepper")
        .context("reading the API-key pepper")?;
    let audit_key = keys.signing_key(uos_keys::KeyPurpose::Audit);

    let started = Instant::now();
    let store = uos_store_postgres::PgStore::connect(url, 1).await?;
    store.migrate().await?;
    // The server bootstraps its platform admin only into an empty store, so the seed makes
    // the one the benchmarks log in as, with the service's own password hashing.
    let hasher = uos_authn::PasswordHasher::new(uos_authn::PasswordParams::default())?;
    let mut admin = User::new(
        Email::parse(bench::ADMIN)?,
        UserStatus::Active,
        uos_domain::now(),
    );
    admin.platform_admin = true;
    admin.password_hash = Some(hasher.hash(bench::PASSWORD)?);
    let mut tx = store.begin().await?;
    tx.insert_user(&admin).await?;
    tx.commit().await?;
    store.close().await;
    let migrated = started.elapsed().as_secs_f64();

    let mut conn = PgConnection::connect(url).await?;
    // The rows are consistent by construction (every reference points at a row loaded
    // before it), so the per-row foreign-key triggers would only repeat what is known; this
    // turns them off for this session. Superuser only, like reading past row-level security.
    conn.execute("set session_replication_role = replica")
        .await
        .context("disabling triggers for the load (connect as a superuser)")?;
    let now = uos_domain::now();
    let member = RoleName::parse("member")?;
    let mut loaded = Vec::new();

    loaded.push(
        copy(
            &mut conn,
            "org",
            "org (org_id, slug, display_name, status, status_before_delete, deleted_at, \
             api_key_max_days, created_at, updated_at, version)",
            scale.orgs,
            |n, row| {
                let mut o = Org::new(OrgSlug::parse(&org_slug(n))?, format!("Org {n}"), now);
                o.id = OrgId(id(Kind::Org, n));
                row.uuid(o.id.0)
                    .text(o.slug.as_str())
                    .text(&o.display_name)
                    .text(o.status.as_str())
                    .opt(o.status_before_delete.map(|s| s.as_str()))
                    .time(o.deleted_at)
                    .opt(o.api_key_max_days.map(|d| d.to_string()).as_deref())
                    .time(Some(o.created_at))
                    .time(Some(o.updated_at))
                    .end(o.version);
                Ok(())
            },
        )
        .await?,
    );

    loaded.push(
        copy(
            &mut conn,
            "user_account",
            "user_account (user_id, email, display_name, locale, timezone, status, \
             status_before_delete, platform_admin, password_hash, preferences, created_at, \
             updated_at, deleted_at, version)",
            scale.users,
            |n, row| {
                let email = Email::parse(&format!("user{n:07}@scale.test"))?;
                let mut u = User::new(email, UserStatus::Active, now);
                u.id = UserId(id(Kind::User, n));
                row.uuid(u.id.0)
                    .text(u.email.as_str())
                    .opt(u.display_name.as_deref())
                    .opt(u.locale.as_deref())
                    .opt(u.timezone.as_deref())
                    .text(u.status.as_str())
                    .opt(u.status_before_delete.map(|s| s.as_str()))
                    .text(if u.platform_admin { "true" } else { "false" })
                    .opt(u.password_hash.as_deref())
                    .text(&u.preferences.to_string())
                    .time(Some(u.created_at))
                    .time(Some(u.updated_at))
                    .time(u.deleted_at)
                    .end(u.version);
                Ok(())
            },
        )
        .await?,
    );

    loaded.push(
        copy(
            &mut conn,
            "membership",
            "membership (membership_id, org_id, user_id, roles, status, created_at, \
             updated_at, version)",
            scale.memberships,
            |i, row| {
                let (org, user) = membership_of(i, scale);
                let mut m = Membership::new(
                    OrgId(id(Kind::Org, org)),
                    UserId(id(Kind::User, user)),
                    vec![member.clone()],
                    now,
                );
                m.id = MembershipId(id(Kind::Membership, i));
                row.uuid(m.id.0)
                    .uuid(m.org_id.0)
                    .uuid(m.user_id.0)
                    .text(&serde_json::to_string(&m.roles)?)
                    .text(m.status.as_str())
                    .time(Some(m.created_at))
                    .time(Some(m.updated_at))
                    .end(m.version);
                Ok(())
            },
        )
        .await?,
    );

    loaded.push(
        copy(
            &mut conn,
            "service_account",
            "service_account (service_account_id, org_id, name, description, roles, status, \
             max_key_age_days, refuse_after_days, client_secret_hash, client_secret_created_at, \
             created_at, updated_at, deleted_at, version)",
            scale.orgs,
            |n, row| {
                let mut sa = ServiceAccount::new(
                    OrgId(id(Kind::Org, n)),
                    "scale-robot".into(),
                    vec![member.clone()],
                    now,
                );
                sa.id = ServiceAccountId(id(Kind::ServiceAccount, n));
                row.uuid(sa.id.0)
                    .uuid(sa.org_id.0)
                    .text(&sa.name)
                    .opt(sa.description.as_deref())
                    .text(&serde_json::to_string(&sa.roles)?)
                    .text(sa.status.as_str())
                    .opt(
                        sa.rotation
                            .max_key_age_days
                            .map(|d| d.to_string())
                            .as_deref(),
                    )
                    .opt(
                        sa.rotation
                            .refuse_after_days
                            .map(|d| d.to_string())
                            .as_deref(),
                    )
                    .opt(sa.client_secret_hash.as_deref())
                    .time(sa.client_secret_created_at)
                    .time(Some(sa.created_at))
                    .time(Some(sa.updated_at))
                    .time(sa.deleted_at)
                    .end(sa.version);
                Ok(())
            },
        )
        .await?,
    );

    let scopes = vec![Permission::parse("users:read")?];
    loaded.push(
        copy(
            &mut conn,
            "api_key",
            "api_key (api_key_id, org_id, service_account_id, name, prefix, secret_hash, \
             scopes, created_at, expires_at, revoked_at, last_used_at, replaced_by, replaces, \
             overdue_reported_at, quarantined_at, quarantine_reason, version)",
            scale.api_keys,
            |k, row| {
                let owner = k % scale.orgs;
                let text = uos_authn::generate_api_key().key;
                if k < keep {
                    kept.push(text.clone());
                }
                let mut key = crate::bench_machine::api_key_row(
                    &pepper,
                    &text,
                    OrgId(id(Kind::Org, owner)),
                    ServiceAccountId(id(Kind::ServiceAccount, owner)),
                    format!("scale key {k}"),
                    scopes.clone(),
                )?;
                key.id = ApiKeyId(id(Kind::ApiKey, k));
                row.uuid(key.id.0)
                    .uuid(key.org_id.0)
                    .uuid(key.service_account_id.0)
                    .text(&key.name)
                    .text(&key.prefix)
                    .text(&key.secret_hash)
                    .text(&serde_json::to_string(&key.scopes)?)
                    .time(Some(key.created_at))
                    .time(key.expires_at)
                    .time(key.revoked_at)
                    .time(key.last_used_at)
                    .opt(key.replaced_by.map(|r| r.0.to_string()).as_deref())
                    .opt(key.replaces.map(|r| r.0.to_string()).as_deref())
                    .time(key.overdue_reported_at)
                    .time(key.quarantined_at)
                    .opt(key.quarantine_reason.as_deref())
                    .end(key.version);
                Ok(())
            },
        )
        .await?,
    );

    // Each org's chain continues from its own head; `position` comes from its identity
    // sequence, in the order of the COPY, so the large org's events are interleaved with
    // everyone else's as in a live system.
    let mut heads: Vec<(i64, String)> =
        vec![(0, uos_audit::GENESIS_HASH.to_owned()); usize::try_from(scale.orgs)?];
    loaded.push(
        copy(
            &mut conn,
            "audit_event",
            "audit_event (chain, seq, audit_event_id, occurred_at, org_id, actor_id, action, \
             target_id, hash, payload)",
            scale.audit_events,
            |i, row| {
                let org = audit_org(i, scale.orgs);
                let org_id = id(Kind::Org, org);
                let user = id(Kind::User, i % scale.users).to_string();
                let event = uos_audit::NewEvent {
                    id: id(Kind::AuditEvent, i),
                    occurred_at: now + chrono::Duration::microseconds(i64::try_from(i)?),
                    actor: uos_audit::Actor {
                        kind: "user".into(),
                        id: Some(user.clone()),
                    },
                    action: "member.added".into(),
                    org_id: Some(org_id),
                    target: uos_audit::Target {
                        kind: "user".into(),
                        id: Some(user),
                    },
                    changes: uos_audit::Changes {
                        before: serde_json::Value::Null,
                        after: serde_json::json!({"roles": ["member"]}),
                    },
                    request_id: None,
                };
                let head = &mut heads[usize::try_from(org)?];
                let sealed = uos_audit::seal(event, head.0 + 1, &head.1, &audit_key);
                // The payload as the store writes it (`AuditRow::payload`, a JSON value).
                let payload = serde_json::to_value(&sealed)?.to_string();
                row.text(&sealed.chain)
                    .int(sealed.seq)
                    .uuid(sealed.id)
                    .time(Some(sealed.occurred_at))
                    .uuid(org_id)
                    .opt(sealed.actor.id.as_deref())
                    .text(&sealed.action)
                    .opt(sealed.target.id.as_deref())
                    .text(&sealed.hash)
                    .text(&payload)
                    .finish();
                *head = (sealed.seq, sealed.hash);
                Ok(())
            },
        )
        .await?,
    );

    // The heads the server appends after; an org without events has none (genesis).
    let chained: Vec<(u64, &(i64, String))> = (0..scale.orgs)
        .zip(heads.iter())
        .filter(|(_, h)| h.0 > 0)
        .collect();
    loaded.push(
        copy(
            &mut conn,
            "audit_chain",
            "audit_chain (chain, seq, hash)",
            chained.len() as u64,
            |n, row| {
                let (org, (seq, hash)) = chained[usize::try_from(n)?];
                row.text(&uos_audit::chain_of(Some(id(Kind::Org, org))))
                    .int(*seq)
                    .text(hash)
                    .finish();
                Ok(())
            },
        )
        .await?,
    );

    let analysing = Instant::now();
    conn.execute("analyze").await?;
    let analysed = analysing.elapsed().as_secs_f64();
    conn.close().await?;

    let mut out = String::new();
    writeln!(out, "== seed: {} into {}", scale.flags(), redact(url))?;
    writeln!(out, "migrate        {migrated:>8.1} s")?;
    for l in &loaded {
        writeln!(
            out,
            "{:<14} {:>8.1} s  {:>9} rows  {:>7.0} rows/s",
            l.table,
            l.secs,
            l.rows,
            l.rows as f64 / l.secs.max(1e-9)
        )?;
    }
    writeln!(out, "analyze        {analysed:>8.1} s")?;
    writeln!(
        out,
        "total          {:>8.1} s",
        started.elapsed().as_secs_f64()
    )?;
    Ok((out, kept))
}

/// `url` without its password, for printing.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if url[scheme + 3..at].contains(':') => {
            let user_end = scheme + 3 + url[scheme + 3..at].find(':').unwrap_or(0);
            format!("{}:***{}", &url[..user_end], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Rows sent per COPY message: large enough that the round trips do not count.
const CHUNK_BYTES: usize = 1 << 20;

/// Load `rows` rows into `table` (`columns` names it with its column list) with one
/// `COPY … FROM STDIN`, `row(n, …)` writing the n-th.
async fn copy(
    conn: &mut PgConnection,
    table: &'static str,
    columns: &str,
    rows: u64,
    mut row: impl FnMut(u64, &mut CsvRow) -> anyhow::Result<()>,
) -> anyhow::Result<Loaded> {
    let started = Instant::now();
    let mut copy = conn
        .copy_in_raw(&format!("copy {columns} from stdin (format csv)"))
        .await
        .with_context(|| format!("starting the COPY into {table}"))?;
    let mut csv = CsvRow::default();
    let mut sent = async {
        for n in 0..rows {
            row(n, &mut csv)?;
            if csv.buf.len() >= CHUNK_BYTES {
                copy.send(std::mem::take(&mut csv.buf).into_bytes()).await?;
            }
        }
        if !csv.buf.is_empty() {
            copy.send(std::mem::take(&mut csv.buf).into_bytes()).await?;
        }
        anyhow::Ok(())
    }
    .await;
    if sent.is_ok() {
        sent = copy.finish().await.map(drop).map_err(Into::into);
    } else {
        // The connection refuses anything else until the COPY is ended.
        let _ = copy.abort("the seeder failed").await;
    }
    sent.with_context(|| format!("loading {table}"))?;
    Ok(Loaded {
        table,
        rows,
        secs: started.elapsed().as_secs_f64(),
    })
}

/// Rows in PostgreSQL's CSV format: a missing value is an empty field (NULL), any other is
/// quoted, so commas and quotes inside JSON need no further thought.
#[derive(Default)]
struct CsvRow {
    buf: String,
    /// Whether the current row has a field yet (the next one needs a comma).
    started: bool,
}

impl CsvRow {
    fn sep(&mut self) {
        if self.started {
            self.buf.push(',');
        }
        self.started = true;
    }

    fn text(&mut self, v: &str) -> &mut Self {
        self.sep();
        self.buf.push('"');
        self.buf.push_str(&v.replace('"', "\"\""));
        self.buf.push('"');
        self
    }

    fn opt(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            Some(v) => self.text(v),
            None => {
                self.sep();
                self
            }
        }
    }

    fn uuid(&mut self, v: Uuid) -> &mut Self {
        self.sep();
        let _ = write!(self.buf, "{v}");
        self
    }

    fn time(&mut self, v: Option<DateTime<Utc>>) -> &mut Self {
        self.sep();
        if let Some(t) = v {
            self.buf
                .push_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true));
        }
        self
    }

    /// A number field in the middle of a row.
    fn int(&mut self, n: i64) -> &mut Self {
        self.sep();
        let _ = write!(self.buf, "{n}");
        self
    }

    /// The last field, a number (the `version` of most tables), and the end of the row.
    fn end(&mut self, n: i64) {
        self.int(n).finish();
    }

    fn finish(&mut self) {
        self.buf.push('\n');
        self.started = false;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn scale() -> Scale {
        Scale {
            users: 10,
            orgs: 4,
            memberships: 25,
            large_org_members: 6,
            api_keys: 0,
            audit_events: 0,
        }
    }

    #[test]
    fn ids_sort_by_counter_and_differ_by_kind() {
        let a = id(Kind::User, 1);
        assert_eq!(a.get_version_num(), 7);
        assert!(a < id(Kind::User, 2) && id(Kind::User, 255) < id(Kind::User, 256));
        assert_ne!(id(Kind::User, 7), id(Kind::Org, 7));
    }

    #[test]
    fn spread_counters_are_distinct() {
        let picked: std::collections::HashSet<u64> = spread(120_000, 10_000).collect();
        assert_eq!(picked.len(), 10_000);
        assert!(picked.iter().all(|&n| n < 120_000));
        assert_eq!(spread(2_000, 10_000).count(), 2_000);
    }

    #[test]
    fn no_user_is_in_an_org_twice() {
        let s = scale();
        s.check().unwrap();
        let mut seen = std::collections::HashSet::new();
        for i in 0..s.memberships {
            let (org, user) = membership_of(i, &s);
            assert!(org < s.orgs && user < s.users, "{i}: ({org}, {user})");
            assert!(
                seen.insert((org, user)),
                "membership {i} repeats ({org}, {user})"
            );
        }
        assert_eq!(
            (0..s.memberships)
                .filter(|&i| membership_of(i, &s).0 == 0)
                .count(),
            6
        );
    }

    #[test]
    fn csv_quotes_text_and_leaves_nulls_empty() {
        let mut r = CsvRow::default();
        r.text(r#"{"a":1}"#).opt(None).end(3);
        assert_eq!(r.buf, "\"{\"\"a\"\":1}\",,3\n");
    }

    #[test]
    fn password_is_not_printed() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
