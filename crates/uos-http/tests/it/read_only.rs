//! Read-only mode, the design's degraded mode: when PostgreSQL refuses writes (a failover
//! cuts every session and the database comes back read-only), reads keep answering, writes
//! answer 503 `read_only` with `Retry-After` and change nothing, and once the database takes
//! writes again the service writes again by itself, with no restart.

use super::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use uos_store_postgres::testing::set_read_only;
use uos_testkit::Backend;

/// What one request answered: status, problem code (empty for a success), `Retry-After`.
type Seen = (u16, String, Option<String>);

fn create_account(i: usize) -> Req {
    Req::post("/v1/orgs/rdo/service-accounts")
        .json(json!({"name": format!("sa-{i}"), "roles": ["member"]}))
}

/// Send `req()` until `done` holds for the answer, for at most `secs`; the last answer.
async fn until(
    app: &TestApp,
    admin: &str,
    secs: u64,
    mut req: impl FnMut() -> Req,
    done: impl Fn(&TestResponse) -> bool,
) -> TestResponse {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let r = app.send(req().token(admin)).await;
        if done(&r) || Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL"]
async fn writes_pause_while_the_database_is_read_only_and_resume_by_themselves() {
    let app = Arc::new(TestApp::spawn(Backend::Postgres).await);
    let admin = app.admin_token().await;
    app.create_org(&admin, "rdo").await;
    let postgres = uos_testkit::postgres_admin_url();

    // Load throughout: one client reads the org, one creates service accounts.
    let stop = Arc::new(AtomicBool::new(false));
    let load = |write: bool| {
        let (app, admin, stop) = (app.clone(), admin.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seen: Vec<Seen> = Vec::new();
            let mut i = 1_000;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let req = if write {
                    create_account(i)
                } else {
                    Req::get("/v1/orgs/rdo")
                };
                let r = app.send(req.token(&admin)).await;
                let code = if r.status.is_success() { "" } else { r.code() };
                let retry = r.header("retry-after").map(str::to_owned);
                seen.push((r.status.as_u16(), code.to_owned(), retry));
            }
            seen
        })
    };
    let (reads, writes) = (load(false), load(true));
    tokio::time::sleep(Duration::from_millis(300)).await;

    set_read_only(&postgres, &app.database_url, true)
        .await
        .unwrap();
    let mut i = 0;
    let r = until(
        &app,
        &admin,
        10,
        || {
            i += 1;
            create_account(i)
        },
        |r| r.status == 503 && r.code() == "read_only",
    )
    .await;
    assert_problem(&r, 503, "read_only");
    assert_eq!(r.header("retry-after"), Some("5"), "{:?}", r.headers);
    // Reads answer, and the refused writes changed nothing.
    let before = get_ok(&app, &admin, "/v1/orgs/rdo/service-accounts?limit=100").await;
    for _ in 0..20 {
        let r = app.send(Req::get("/v1/orgs/rdo").token(&admin)).await;
        assert_status(&r, 200);
    }
    let r = app.send(create_account(999).token(&admin)).await;
    assert_problem(&r, 503, "read_only");
    let after = get_ok(&app, &admin, "/v1/orgs/rdo/service-accounts?limit=100").await;
    assert_eq!(before["items"], after["items"]);

    // The database takes writes again; open sessions stay read-only, and the service
    // replaces them by itself.
    set_read_only(&postgres, &app.database_url, false)
        .await
        .unwrap();
    let r = until(
        &app,
        &admin,
        15,
        || create_account(999),
        |r| r.status == 201,
    )
    .await;
    assert_status(&r, 201);
    // Let the load run on the recovered database for a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (reads, writes) = (reads.await.unwrap(), writes.await.unwrap());

    // Under load, nothing failed otherwise: a read only ever failed while the failover cut
    // its session (`unavailable`), a write also while the database refused it.
    for (status, code, _) in &reads {
        assert!(
            *status == 200 || (*status == 503 && code == "unavailable"),
            "a read answered {status} {code}"
        );
    }
    for (status, code, retry) in &writes {
        match (*status, code.as_str()) {
            (201, _) | (503, "unavailable") => {}
            (503, "read_only") => assert_eq!(retry.as_deref(), Some("5")),
            _ => panic!("a write answered {status} {code}"),
        }
    }
    let refused = writes.iter().position(|(_, code, _)| code == "read_only");
    let refused = refused.expect("the load's writes met the read-only database");
    assert!(
        writes[refused..].iter().any(|w| w.0 == 201),
        "and then wrote again"
    );
}
