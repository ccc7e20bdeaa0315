//! The plan check of a seeded database: every list query of the store, run through the store
//! port (the SQL the service really sends, with realistic parameters, first and deep pages),
//! with PostgreSQL's `auto_explain` sending each statement's plan back to the client as a
//! notice. It fails if a plan reads a large table sequentially, sorts a large input instead
//! of walking an index in the order of the page, or walks an index that does not match the
//! filter (a node whose filter discarded a large number of rows).

use crate::seed::{id, Kind, Scale};
use anyhow::{bail, Context};
use sqlx::{Connection, PgConnection};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt as _};
use uos_domain::{MembershipStatus, OrgId, ServiceAccountId, UserId, UserStatus};
use uos_store::{
    AuditFilter, MemberFilter, OrgFilter, PageRequest, ReadTx, Store as _, UserFilter,
};

/// Tables with fewer rows than this may be read whole (a few pages: a sequential scan is
/// the planner's right choice), and sorting fewer rows than this is cheap.
const LARGE_ROWS: f64 = 10_000.0;

/// Where sqlx reports a server notice (a `tracing` event whose `message` is the notice text).
const NOTICE_TARGET: &str = "sqlx::postgres::notice";

/// Every statement's plan, as JSON with the rows each node really produced and discarded,
/// sent to the client as a NOTICE: the settings the check's connections start with
/// (superuser only, as `session_preload_libraries` is).
const AUTO_EXPLAIN: &str = "-c session_preload_libraries=auto_explain \
     -c auto_explain.log_min_duration=0 -c auto_explain.log_format=json \
     -c auto_explain.log_level=notice -c auto_explain.log_analyze=on \
     -c client_min_messages=notice";

/// The notices sqlx reported since the last drain, from every connection of this process.
fn notices() -> &'static Arc<Mutex<Vec<String>>> {
    static NOTICES: OnceLock<Arc<Mutex<Vec<String>>>> = OnceLock::new();
    NOTICES.get_or_init(|| {
        let sink = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(NoticeLayer(Arc::clone(&sink)));
        if tracing::subscriber::set_global_default(subscriber).is_err() {
            eprintln!("xtask: another tracing subscriber is installed; plans cannot be read");
        }
        sink
    })
}

fn drain() -> Vec<String> {
    notices()
        .lock()
        .map(|mut v| std::mem::take(&mut *v))
        .unwrap_or_default()
}

/// Collects the text of sqlx's notice events.
struct NoticeLayer(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for NoticeLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: LayerContext<'_, S>) {
        if event.metadata().target() != NOTICE_TARGET {
            return;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        if let Ok(mut v) = self.0.lock() {
            v.push(message.0);
        }
    }
}

struct Message(String);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.0);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" && self.0.is_empty() {
            self.0 = format!("{value:?}");
        }
    }
}

/// What the check found: each query's plan in brief, and the offences.
#[derive(Debug)]
pub struct Plans {
    lines: Vec<String>,
    offences: Vec<String>,
}

impl Plans {
    /// Fail naming every query whose plan scans or sorts a large table.
    pub fn verdict(&self) -> anyhow::Result<()> {
        if self.offences.is_empty() {
            return Ok(());
        }
        bail!(
            "{} list quer{} scan without an index at this scale:\n  {}",
            self.offences.len(),
            if self.offences.len() == 1 {
                "y does"
            } else {
                "ies do"
            },
            self.offences.join("\n  ")
        )
    }

    /// Run one store call and take the plans its statements reported.
    fn take<T>(
        &mut self,
        name: &str,
        result: uos_store::Result<T>,
        rows: &HashMap<String, f64>,
    ) -> anyhow::Result<()> {
        result.with_context(|| format!("running {name}"))?;
        let plans: Vec<serde_json::Value> = drain()
            .iter()
            .filter_map(|n| n.find('{').map(|at| &n[at..]))
            .filter_map(|json| serde_json::from_str(json).ok())
            .collect();
        // Only the list statement itself: not the scope settings of the transaction.
        let plans: Vec<&serde_json::Value> = plans
            .iter()
            .filter(|p| {
                p["Query Text"]
                    .as_str()
                    .is_some_and(|q| q.contains(" limit ") || q.contains(" order by "))
            })
            .collect();
        if plans.is_empty() {
            bail!(
                "no plan was reported for {name}: is auto_explain installed (PostgreSQL's \
                 contrib modules) and the connection a superuser?"
            );
        }
        for plan in plans {
            let mut path = Vec::new();
            let mut bad = Vec::new();
            walk(&plan["Plan"], rows, &mut path, &mut bad);
            let ok = if bad.is_empty() { "ok  " } else { "FAIL" };
            self.lines
                .push(format!("{ok} {name:<44} {}", path.join(" → ")));
            for b in bad {
                self.offences.push(format!("{name}: {b}"));
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for Plans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "== plan check: every list query at this scale, plans from auto_explain \
             (large = ≥{LARGE_ROWS:.0} rows)"
        )?;
        for l in &self.lines {
            writeln!(f, "{l}")?;
        }
        writeln!(
            f,
            "plan check: {}",
            if self.offences.is_empty() {
                "pass".to_owned()
            } else {
                format!("FAIL ({} offences)", self.offences.len())
            }
        )
    }
}

/// The nodes of `node` and below, briefly, into `path`; a sequential scan of a large table, a
/// sort of a large input or a large number of rows read only to be filtered out into `bad`.
fn walk(
    node: &serde_json::Value,
    rows: &HashMap<String, f64>,
    path: &mut Vec<String>,
    bad: &mut Vec<String>,
) {
    let kind = node["Node Type"].as_str().unwrap_or("?");
    let relation = node["Relation Name"].as_str();
    let mut brief = kind.to_owned();
    if let Some(index) = node["Index Name"].as_str() {
        let _ = write!(brief, " using {index}");
    }
    if let Some(rel) = relation {
        let _ = write!(brief, " on {rel}");
    }
    path.push(brief);
    let planned = node["Plan Rows"].as_f64().unwrap_or(0.0);
    match (kind, relation) {
        ("Seq Scan", Some(rel)) => {
            let size = rows.get(rel).copied().unwrap_or(0.0);
            if size >= LARGE_ROWS {
                bad.push(format!("Seq Scan on {rel} ({size:.0} rows)"));
            }
        }
        ("Sort", _) if planned >= LARGE_ROWS => {
            bad.push(format!(
                "Sort of ~{planned:.0} rows by {}",
                node["Sort Key"]
            ));
        }
        _ => {}
    }
    // A sequential scan of a large table is reported above already.
    let discarded = node["Rows Removed by Filter"].as_f64().unwrap_or(0.0);
    if discarded >= LARGE_ROWS && kind != "Seq Scan" {
        bad.push(format!(
            "{} discarded {discarded:.0} rows by its filter {}",
            path.last().map_or(kind, String::as_str),
            node["Filter"]
        ));
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        walk(child, rows, path, bad);
    }
}

/// `url` with the auto_explain settings added to its connection options.
fn with_auto_explain(url: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    let options = AUTO_EXPLAIN.replace(' ', "%20").replace('=', "%3D");
    format!("{url}{sep}options={options}")
}

/// Rows of each table of the public schema, as the last ANALYZE estimated them.
async fn table_rows(url: &str) -> anyhow::Result<HashMap<String, f64>> {
    let mut conn = PgConnection::connect(url).await?;
    let rows: Vec<(String, f32)> = sqlx::query_as(
        "select relname::text, reltuples from pg_class \
         where relkind = 'r' and relnamespace = 'public'::regnamespace",
    )
    .fetch_all(&mut conn)
    .await?;
    conn.close().await?;
    Ok(rows.into_iter().map(|(t, n)| (t, f64::from(n))).collect())
}

/// Run every list query of the store against the database at `url`, seeded at `scale`.
pub async fn run(url: &str, scale: &Scale) -> anyhow::Result<Plans> {
    let rows = table_rows(url).await?;
    notices();
    let store = uos_store_postgres::PgStore::connect(&with_auto_explain(url), 1).await?;
    let mut plans = Plans {
        lines: Vec::new(),
        offences: Vec::new(),
    };
    let mut r = store.read().await?;
    drain();
    let result = list_queries(&mut *r, scale, &rows, &mut plans).await;
    drop(r);
    store.close().await;
    result?;
    Ok(plans)
}

/// The list queries, each first page and a page deep into the list; ids are the seed's.
async fn list_queries(
    r: &mut dyn ReadTx,
    scale: &Scale,
    rows: &HashMap<String, f64>,
    plans: &mut Plans,
) -> anyhow::Result<()> {
    let first = PageRequest::first(20);
    let after = |uuid: uuid::Uuid| PageRequest {
        after: Some(uuid.to_string()),
        limit: 20,
    };
    let large = OrgId(id(Kind::Org, 0));
    let mid_user = id(Kind::User, scale.users / 2);
    let deep_members = after(id(Kind::Membership, scale.large_org_members / 2));
    let account = ServiceAccountId(id(Kind::ServiceAccount, 0));

    let all = UserFilter::default();
    plans.take("users", r.list_users(&all, &first).await, rows)?;
    plans.take(
        "users, deep page",
        r.list_users(&all, &after(mid_user)).await,
        rows,
    )?;
    let active = UserFilter {
        status: Some(UserStatus::Active),
        email_prefix: None,
    };
    plans.take(
        "users by status, deep page",
        r.list_users(&active, &after(mid_user)).await,
        rows,
    )?;
    let prefix = UserFilter {
        status: None,
        email_prefix: Some("user00012".into()),
    };
    plans.take(
        "users by email prefix",
        r.list_users(&prefix, &first).await,
        rows,
    )?;

    let orgs = OrgFilter::default();
    let deep_orgs = after(id(Kind::Org, scale.orgs * 3 / 4));
    plans.take("orgs", r.list_orgs(&orgs, &first).await, rows)?;
    plans.take(
        "orgs, deep page",
        r.list_orgs(&orgs, &deep_orgs).await,
        rows,
    )?;
    let mine = OrgFilter {
        member: Some(UserId(id(Kind::User, 0))),
        include_deleted: false,
    };
    plans.take("orgs of a member", r.list_orgs(&mine, &first).await, rows)?;

    let members = MemberFilter {
        org: large,
        status: None,
    };
    plans.take(
        "members of the large org",
        r.list_members(&members, &first).await,
        rows,
    )?;
    plans.take(
        "members, deep page",
        r.list_members(&members, &deep_members).await,
        rows,
    )?;
    // A small org's members are spread over the whole table: only the org's index finds them.
    let small = OrgId(id(Kind::Org, scale.orgs / 2));
    let few = MemberFilter {
        org: small,
        status: None,
    };
    plans.take(
        "members of a small org",
        r.list_members(&few, &first).await,
        rows,
    )?;
    let active_members = MemberFilter {
        org: large,
        status: Some(MembershipStatus::Active),
    };
    plans.take(
        "active members, deep page",
        r.list_members(&active_members, &deep_members).await,
        rows,
    )?;
    // Seeded members are all active: the suspended ones are the rarest status there is.
    let suspended_members = MemberFilter {
        org: large,
        status: Some(MembershipStatus::Suspended),
    };
    plans.take(
        "suspended members of the large org",
        r.list_members(&suspended_members, &first).await,
        rows,
    )?;
    plans.take(
        "memberships of a user",
        r.list_memberships_of_user(UserId(mid_user)).await,
        rows,
    )?;

    plans.take(
        "invites of the large org",
        r.list_invites(large, &first).await,
        rows,
    )?;
    plans.take(
        "custom roles of the large org",
        r.list_roles(large, &first).await,
        rows,
    )?;
    plans.take(
        "service accounts of the large org",
        r.list_service_accounts(large, false, &first).await,
        rows,
    )?;
    plans.take(
        "API keys of an account",
        r.list_api_keys(account, &first).await,
        rows,
    )?;
    plans.take(
        "overdue API keys of the large org",
        r.list_overdue_api_keys(large, uos_domain::now(), &first)
            .await,
        rows,
    )?;

    let deep_audit = PageRequest {
        after: Some((scale.audit_events / 2).to_string()),
        limit: 20,
    };
    let user = id(Kind::User, 5).to_string();
    let audit = [
        ("audit events", AuditFilter::default(), &first),
        (
            "audit events, deep page",
            AuditFilter::default(),
            &deep_audit,
        ),
        (
            "audit events of the large org",
            AuditFilter {
                org: Some(large),
                ..AuditFilter::default()
            },
            &first,
        ),
        (
            "audit events of the large org, deep page",
            AuditFilter {
                org: Some(large),
                ..AuditFilter::default()
            },
            &deep_audit,
        ),
        (
            "audit events of a small org",
            AuditFilter {
                org: Some(small),
                ..AuditFilter::default()
            },
            &first,
        ),
        (
            "audit events by actor",
            AuditFilter {
                actor: Some(user.clone()),
                ..AuditFilter::default()
            },
            &first,
        ),
        (
            "audit events by target",
            AuditFilter {
                target: Some(user),
                ..AuditFilter::default()
            },
            &first,
        ),
        (
            "audit events by action, deep page",
            AuditFilter {
                action: Some("member.added".into()),
                ..AuditFilter::default()
            },
            &deep_audit,
        ),
        (
            "audit events since a day",
            AuditFilter {
                since: Some(uos_domain::now() - chrono::Duration::days(1)),
                ..AuditFilter::default()
            },
            &first,
        ),
    ];
    for (name, filter, page) in audit {
        plans.take(name, r.list_audit(&filter, page).await, rows)?;
    }
    plans.take(
        "audit checkpoints",
        r.list_checkpoints(None, &first).await,
        rows,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn offences(plan: serde_json::Value) -> (String, Vec<String>) {
        let rows = HashMap::from([("big".to_owned(), 1e6), ("small".to_owned(), 10.0)]);
        let (mut path, mut bad) = (Vec::new(), Vec::new());
        walk(&plan, &rows, &mut path, &mut bad);
        (path.join(" → "), bad)
    }

    #[test]
    fn index_walks_and_small_tables_pass() {
        let (path, bad) = offences(serde_json::json!({
            "Node Type": "Limit", "Plan Rows": 21, "Plans": [
                {"Node Type": "Index Scan", "Index Name": "big_pkey", "Relation Name": "big",
                 "Plan Rows": 21, "Rows Removed by Filter": 80},
                {"Node Type": "Seq Scan", "Relation Name": "small", "Plan Rows": 10}]
        }));
        assert_eq!(
            path,
            "Limit → Index Scan using big_pkey on big → Seq Scan on small"
        );
        assert!(bad.is_empty(), "{bad:?}");
    }

    #[test]
    fn scans_sorts_and_filtered_walks_of_large_tables_fail() {
        let (_, bad) = offences(serde_json::json!({
            "Node Type": "Limit", "Plans": [
                {"Node Type": "Sort", "Plan Rows": 50000, "Sort Key": ["id"], "Plans": [
                    {"Node Type": "Seq Scan", "Relation Name": "big", "Plan Rows": 50000,
                     "Rows Removed by Filter": 950000}]},
                {"Node Type": "Index Scan", "Index Name": "big_pkey", "Relation Name": "big",
                 "Rows Removed by Filter": 20000, "Filter": "(org_id = $1)"}]
        }));
        assert_eq!(bad.len(), 3, "{bad:?}");
        assert!(bad[0].starts_with("Sort of ~50000 rows"), "{bad:?}");
        assert_eq!(bad[1], "Seq Scan on big (1000000 rows)");
        assert!(
            bad[2].contains("big_pkey") && bad[2].contains("20000"),
            "{bad:?}"
        );
    }
}
