//! The dashboards and alert rules shipped with the chart and kustomize against what the service
//! really exports: after one scenario (logins, a failed and a rate-limited login, reads, usage,
//! a decision a budget denies, a reconcile pass over a config directory) every `uos_*` series a
//! query names must be in the admin-api's or the reconciler's `/metrics`, with every label the
//! query matches on or groups by. A renamed metric or label fails here, not on a dark dashboard.

use super::*;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use uos_reconcile::{Engine, Source};
use uos_testkit::Backend;

/// Labels Prometheus adds when it scrapes (target and prometheus-operator relabelling), which
/// no exposition carries.
const TARGET_LABELS: [&str; 7] = [
    "namespace",
    "pod",
    "instance",
    "job",
    "service",
    "endpoint",
    "container",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One PromQL query of a dashboard or rule, and where it is written.
#[derive(Debug)]
struct Query {
    place: String,
    expr: String,
    /// Labels the query needs beyond its own text (a `label_values` variable's label).
    needs: Vec<String>,
}

impl Query {
    fn new(place: String, expr: &str) -> Self {
        Self {
            place,
            expr: expr.to_owned(),
            needs: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
struct PrometheusRule {
    spec: RuleSpec,
}

#[derive(Deserialize)]
struct RuleSpec {
    groups: Vec<RuleGroup>,
}

#[derive(Deserialize)]
struct RuleGroup {
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
struct Rule {
    alert: String,
    expr: String,
}

/// The alert rules, from the kustomize component: plain YAML, unlike the chart's template, and
/// `cargo xtask manifests` fails if the two render differently.
fn rule_queries() -> Vec<Query> {
    let path = workspace().join("kustomize/components/monitoring/prometheusrule.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let rule: PrometheusRule =
        marked_yaml::from_yaml(0, &text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let queries: Vec<Query> = rule
        .spec
        .groups
        .iter()
        .flat_map(|g| &g.rules)
        .map(|r| Query::new(format!("alert {}", r.alert), &r.expr))
        .collect();
    assert!(!queries.is_empty(), "no alert rules in {path:?}");
    queries
}

/// Every query of the chart's dashboards (kustomize ships copies `cargo xtask manifests`
/// holds equal): panel targets, rows' panels included, and query variables.
fn dashboard_queries() -> Vec<Query> {
    let dir = workspace().join("charts/user-org-service/dashboards");
    let mut queries = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let panels = dash["panels"].as_array().unwrap();
        let nested = panels
            .iter()
            .flat_map(|p| p["panels"].as_array().into_iter().flatten());
        for panel in panels.iter().chain(nested) {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let place = format!("{file}: panel {}", panel["title"]);
                queries.push(Query::new(place, target["expr"].as_str().unwrap()));
            }
        }
        for var in dash["templating"]["list"].as_array().unwrap() {
            let Some(definition) = var["definition"].as_str() else {
                continue;
            };
            // Grafana's label_values(SELECTOR, LABEL): the selector must carry the label.
            let (selector, label) = definition
                .strip_prefix("label_values(")
                .and_then(|d| d.strip_suffix(')'))
                .and_then(|d| d.rsplit_once(','))
                .unwrap_or_else(|| panic!("{file}: variable {definition}: not label_values"));
            let mut q = Query::new(format!("{file}: variable {}", var["name"]), selector);
            q.needs.push(label.trim().to_owned());
            queries.push(q);
        }
    }
    assert!(!queries.is_empty(), "no dashboard queries in {dir:?}");
    queries
}

/// Series name → every label name its samples carry, from a text exposition.
fn exported(exposition: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let tokens = tokenize(line);
        let Some(Token::Ident(name)) = tokens.first() else {
            continue;
        };
        let (labels, _) = matchers(&tokens, 1);
        series.entry(name.clone()).or_default().extend(labels);
    }
    series
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    /// Names, keywords, numbers, durations and Grafana variables alike.
    Ident(String),
    Str,
    Punct(char),
}

/// Just enough PromQL lexing to find series, their matchers and grouping: strings are skipped
/// whole, so nothing inside one is taken for a name.
fn tokenize(expr: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        let word = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '$' | '.');
        if c.is_whitespace() {
        } else if c == '"' || c == '\'' || c == '`' {
            while let Some(d) = chars.next() {
                match d {
                    '\\' => {
                        chars.next();
                    }
                    d if d == c => break,
                    _ => {}
                }
            }
            tokens.push(Token::Str);
        } else if word(c) {
            let mut s = c.to_string();
            while let Some(&d) = chars.peek().filter(|d| word(**d)) {
                s.push(d);
                chars.next();
            }
            tokens.push(Token::Ident(s));
        } else {
            tokens.push(Token::Punct(c));
        }
    }
    tokens
}

/// The label names of a `{…}` at `at`, and the index after it (`at` itself if there is none).
fn matchers(tokens: &[Token], at: usize) -> (Vec<String>, usize) {
    if tokens.get(at) != Some(&Token::Punct('{')) {
        return (Vec::new(), at);
    }
    let mut labels = Vec::new();
    let mut i = at + 1;
    while let Some(t) = tokens.get(i) {
        match t {
            Token::Punct('}') => return (labels, i + 1),
            // A label is the name right after `{` or `,`.
            Token::Ident(name) if matches!(tokens[i - 1], Token::Punct('{' | ',')) => {
                labels.push(name.clone());
            }
            _ => {}
        }
        i += 1;
    }
    (labels, i)
}

/// The index of the `)` closing the `(` at `open`.
fn closing(tokens: &[Token], open: usize) -> Option<usize> {
    let mut depth = 0;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        match t {
            Token::Punct('(') => depth += 1,
            Token::Punct(')') => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// What `query` names that `series` does not export: unknown series, and labels a series is
/// matched on, grouped by (`by (…)`, written before its argument) or asked for that it lacks.
fn problems(query: &Query, series: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let tokens = tokenize(&query.expr);
    let mut out = Vec::new();
    let lacks = |name: &str, label: &str, how: &str| {
        let has = series.get(name).is_some_and(|l| l.contains(label));
        (!has && !TARGET_LABELS.contains(&label)).then(|| {
            format!(
                "{}: {how} label {label:?}, which {name} does not carry",
                query.place
            )
        })
    };
    let mut selected = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        match t {
            Token::Ident(name) if name.starts_with("uos_") => {
                selected.push(name.clone());
                for label in matchers(&tokens, i + 1).0 {
                    out.extend(lacks(name, &label, "matches on"));
                }
                for label in &query.needs {
                    out.extend(lacks(name, label, "asks for"));
                }
            }
            Token::Ident(kw) if kw == "by" => {
                let (Some(Token::Punct('(')), Some(end)) =
                    (tokens.get(i + 1), closing(&tokens, i + 1))
                else {
                    continue;
                };
                let labels: Vec<&String> = tokens[i + 2..end]
                    .iter()
                    .filter_map(|t| match t {
                        Token::Ident(l) => Some(l),
                        _ => None,
                    })
                    .collect();
                let argument = end + 1;
                let arg_end = (tokens.get(argument) == Some(&Token::Punct('(')))
                    .then(|| closing(&tokens, argument))
                    .flatten();
                let Some(arg_end) = arg_end else {
                    out.push(format!(
                        "{}: write `by (…)` before the aggregation's argument",
                        query.place
                    ));
                    continue;
                };
                for t in &tokens[argument..arg_end] {
                    match t {
                        Token::Ident(name) if name.starts_with("uos_") => {
                            for label in &labels {
                                out.extend(lacks(name, label, "groups by"));
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if selected.is_empty() {
        out.push(format!("{}: names no uos_ metric", query.place));
    }
    for name in selected {
        if !series.contains_key(&name) {
            out.push(format!(
                "{}: {name} is not exported by the admin-api or the reconciler",
                query.place
            ));
        }
    }
    out
}

/// A budget of 100 cents, spent, so the next decision that costs is denied by it.
async fn budget_denial(app: &TestApp, admin: &str) {
    let r = app
        .send(
            Req::put("/v1/orgs/acme/budget")
                .token(admin)
                .json(json!({"period": "monthly", "limit_cents": 100})),
        )
        .await;
    assert!(r.status == 200 || r.status == 201, "budget: {}", r.text);
    let r = app
        .send(Req::post("/v1/usage").token(admin).json(json!({
            "org": "acme", "amount_cents": 100, "source_event_id": "e1",
            "occurred_at": chrono::Utc::now().to_rfc3339(),
        })))
        .await;
    assert_status(&r, 202);
    let me = my_id(app, admin).await;
    let r = app
        .send(Req::post("/v1/policy/evaluate").token(admin).json(json!({
            "principal": {"type": "user", "id": me},
            "action": "llm.invoke",
            "resource": {"type": "model", "id": "gpt", "org": "acme"},
            "context": {"cost_cents": 1},
        })))
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body["allow"], false, "{}", r.text);
    assert_eq!(
        r.body["reasons"][0]["code"], "budget_exceeded",
        "{}",
        r.text
    );
}

/// The admin-api's and the reconciler's expositions after the scenario.
async fn scenario() -> String {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[("rate_limit.routes.login.per_address", json!(2))],
    )
    .await;
    let admin = app.admin_token().await;
    app.create_org(&admin, "acme").await;
    get_ok(&app, &admin, "/v1/orgs/acme").await;
    let failed_login = || {
        Req::post("/v1/auth/login")
            .json(json!({"email": ADMIN_EMAIL, "password": "not the password"}))
            .from_ip("203.0.113.9")
    };
    for _ in 0..2 {
        assert_problem(&app.send(failed_login()).await, 401, "invalid_credentials");
    }
    assert_problem(&app.send(failed_login()).await, 429, "rate_limited");
    budget_denial(&app, &admin).await;

    let repo = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(repo.path().join("orgs")).unwrap();
    std::fs::write(
        repo.path().join("orgs/beta.yaml"),
        format!(
            "version: 1\nslug: beta\ndisplay_name: Beta\n\
             members:\n  - email: {ADMIN_EMAIL}\n    roles: [owner]\n"
        ),
    )
    .unwrap();
    let engine = Engine::new(
        app.state.svc.clone(),
        Source::Directory(repo.path().to_owned()),
        None,
        "main".into(),
    );
    engine.reconcile(true).await.unwrap();

    let r = app.send(Req::get("/metrics")).await;
    assert_status(&r, 200);
    assert!(
        r.text.contains("\nuos_policy_budget_denials_total 1\n"),
        "the budget denial is counted: {}",
        r.text
    );
    format!("{}\n{}", r.text, engine.metrics().render())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_alerts_name_only_exported_metrics_and_labels() {
    let series = exported(&scenario().await);
    let queries: Vec<Query> = rule_queries()
        .into_iter()
        .chain(dashboard_queries())
        .collect();
    let found: Vec<String> = queries.iter().flat_map(|q| problems(q, &series)).collect();
    assert!(
        found.is_empty(),
        "{} problem(s):\n{}\nexported: {:#?}",
        found.len(),
        found.join("\n"),
        series
    );
}

/// The check itself: it must fail on what it is there to catch.
#[test]
fn the_check_reports_unknown_metrics_and_labels() {
    let series = exported(
        "# TYPE uos_http_requests_total counter\n\
         uos_http_requests_total{method=\"GET\",route=\"/v1/orgs/{slug}\",status=\"200\"} 1\n\
         uos_reconcile_leader 1\n",
    );
    assert_eq!(
        series["uos_http_requests_total"],
        ["method", "route", "status"]
            .map(String::from)
            .into_iter()
            .collect(),
        "braces inside a label value end nothing"
    );
    let q = |expr: &str| problems(&Query::new("q".into(), expr), &series);
    assert!(
        q(r#"sum by (namespace, route) (rate(uos_http_requests_total{status=~"5.."}[5m]))"#)
            .is_empty()
    );
    assert_eq!(
        q("sum(rate(uos_nonexistent_total[5m]))"),
        ["q: uos_nonexistent_total is not exported by the admin-api or the reconciler"]
    );
    assert_eq!(
        q(r#"uos_reconcile_leader{result="ok"}"#),
        [r#"q: matches on label "result", which uos_reconcile_leader does not carry"#]
    );
    assert_eq!(
        q("max by (org) (uos_reconcile_leader) > 0"),
        [r#"q: groups by label "org", which uos_reconcile_leader does not carry"#]
    );
    assert_eq!(
        q(r#"time() - 1 > 0 and on() vector(1) > 0 or "uos_leader" == 1"#),
        ["q: names no uos_ metric"]
    );
}
