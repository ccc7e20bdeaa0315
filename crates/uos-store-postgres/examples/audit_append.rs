//! Signed audit appends through the store port, as the service makes them, compiled like the
//! service (`cargo run --release -p uos-store-postgres --example audit_append -- URL CHAINS
//! WRITERS SECS`; `cargo xtask bench-audit` runs it). `WRITERS` tasks append for `SECS` seconds,
//! each one signed event per transaction to chain `org:<n>` for n in turn of `CHAINS`. Heads are
//! remembered across the writers, like the service's chain memory: a writer chains from the head
//! last written and locks the head row only when there is none or another writer moved it.
//! Prints the events appended per second and how many appends found their head moved.
//!
//! It runs in release mode because the sealing and signing share the cores with PostgreSQL: a
//! debug build of them would take CPU from the database that the service never takes.
#![allow(clippy::expect_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uos_store::{AuditHead, AuditRow, Store, StoreError};
use uuid::Uuid;

type Heads = Arc<Mutex<HashMap<String, AuditHead>>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, chains, writers, secs] = &args[..] else {
        anyhow::bail!("usage: audit_append DATABASE_URL CHAINS WRITERS SECS");
    };
    let (chains, writers, secs): (usize, usize, u64) =
        (chains.parse()?, writers.parse()?, secs.parse()?);
    let pg = uos_store_postgres::PgStore::connect(url, u32::try_from(writers)?).await?;
    pg.migrate().await?;
    let store: Arc<dyn Store> = Arc::new(pg);
    let key = Arc::new(uos_keys::SigningKey::generate());
    let orgs: Arc<Vec<Uuid>> = Arc::new((0..chains).map(|_| Uuid::now_v7()).collect());
    let appended = Arc::new(AtomicU64::new(0));
    let moved = Arc::new(AtomicU64::new(0));
    let heads: Heads = Arc::default();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for w in 0..writers {
        let writer = Writer {
            store: store.clone(),
            key: key.clone(),
            heads: heads.clone(),
            moved: moved.clone(),
        };
        let (orgs, appended) = (orgs.clone(), appended.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = w;
            while Instant::now() < deadline {
                writer.append(orgs[n % orgs.len()], n, w).await?;
                n += writers;
                appended.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let rate = appended.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    store.close().await;
    println!("{rate:.1} {}", moved.load(Ordering::Relaxed));
    Ok(())
}

struct Writer {
    store: Arc<dyn Store>,
    key: Arc<uos_keys::SigningKey>,
    heads: Heads,
    moved: Arc<AtomicU64>,
}

impl Writer {
    /// One transaction appending one signed event to `org`'s chain.
    async fn append(&self, org: Uuid, n: usize, w: usize) -> anyhow::Result<()> {
        let chain = uos_audit::chain_of(Some(org));
        let mut tx = self.store.begin().await?;
        let known = self
            .heads
            .lock()
            .expect("not poisoned")
            .get(&chain)
            .cloned();
        let mut head = match known {
            Some(h) => h,
            None => tx.lock_audit_head(&chain).await?,
        };
        let mut event = uos_audit::NewEvent {
            id: Uuid::now_v7(),
            occurred_at: uos_domain::now(),
            actor: uos_audit::Actor {
                kind: "system".into(),
                id: None,
            },
            action: "bench.appended".into(),
            org_id: Some(org),
            target: uos_audit::Target {
                kind: "org".into(),
                id: Some(org.to_string()),
            },
            changes: uos_audit::Changes {
                before: serde_json::Value::Null,
                after: serde_json::json!({"n": n, "writer": w}),
            },
            request_id: None,
        };
        loop {
            let sealed = uos_audit::seal(event.clone(), head.seq + 1, &head.hash, &self.key);
            let row = AuditRow {
                chain: sealed.chain.clone(),
                seq: sealed.seq,
                id: sealed.id,
                occurred_at: sealed.occurred_at,
                org_id: Some(uos_domain::OrgId(org)),
                actor_id: None,
                action: sealed.action.clone(),
                target_id: sealed.target.id.clone(),
                hash: sealed.hash.clone(),
                payload: serde_json::to_value(&sealed)?,
                trace_parent: None,
            };
            match tx.append_audit(&head, &row).await {
                Ok(()) => {
                    tx.commit().await?;
                    let next = AuditHead {
                        chain: chain.clone(),
                        seq: row.seq,
                        hash: row.hash,
                    };
                    self.heads.lock().expect("not poisoned").insert(chain, next);
                    return Ok(());
                }
                Err(StoreError::VersionConflict) => {
                    self.moved.fetch_add(1, Ordering::Relaxed);
                    head = tx.lock_audit_head(&chain).await?;
                    event.id = Uuid::now_v7();
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
