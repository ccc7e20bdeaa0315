//! Usage consumed from `billing.usage` end to end: an admin-api process on PostgreSQL counts
//! the stream, is killed with `kill -9` while it does, and a new process resumes from the
//! committed offsets; every distinct event counts exactly once, and exactly the malformed
//! messages reach `billing.usage.dlq`, each with its reason.

use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use uos_events::testing::{consume, produce, Broker};
use uos_events::{DLQ_OFFSET, DLQ_PARTITION, DLQ_REASON};

use crate::replicas::{admin_token, call, Cluster, Replica};
use crate::stream::{create_org, metric};

const TOPIC: &str = "billing.usage";
const DLQ: &str = "billing.usage.dlq";
const STORED: &str = "uos_usage_stream_messages_total{outcome=\"stored\"}";

/// The org's spend so far, as its `total` budget reports it.
async fn spent(client: &reqwest::Client, r: &Replica, token: &str, slug: &str) -> i64 {
    let path = format!("/v1/orgs/{slug}/budget");
    let (status, body) = call(client, r, reqwest::Method::GET, &path, token, None).await;
    assert_eq!(status, 200, "{body}");
    body["spent_cents"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL, Redis and tansu"]
async fn after_a_kill_9_while_consuming_every_event_counts_exactly_once() {
    let started = Instant::now();
    let broker = Broker::start();
    let cluster = Cluster::new(&[
        ("UOS_KAFKA__BROKERS", broker.address.as_str()),
        ("UOS_KAFKA__MESSAGE_TIMEOUT_SECS", "5"),
    ])
    .await;
    let mut first = cluster.replica().await;
    let client = reqwest::Client::new();
    let admin = admin_token(&client, &first).await;
    let slug = "usage-kill";
    create_org(&client, &first, &admin, slug).await;
    let (status, body) = call(
        &client,
        &first,
        reqwest::Method::PUT,
        &format!("/v1/orgs/{slug}/budget"),
        &admin,
        Some(json!({"period": "total", "limit_cents": 1_000_000_000_000_i64})),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // 6000 events, 600 of them sent twice, and malformed messages among them.
    let now = "2026-01-01T00:00:00Z";
    let mut messages: Vec<(String, Vec<u8>)> = Vec::new();
    let mut expected = 0i64;
    for i in 0..6000 {
        let amount = i % 7 + 1;
        expected += amount;
        let event = json!({"org": slug, "amount_cents": amount, "occurred_at": now,
                           "source_event_id": format!("ev-{i}")});
        let bytes = event.to_string().into_bytes();
        if i % 10 == 0 {
            messages.push((format!("k{}", i % 3), bytes.clone()));
        }
        messages.push((format!("k{}", i % 3), bytes));
    }
    let malformed: Vec<(Vec<u8>, &str)> = vec![
        (b"not json at all".to_vec(), "not a usage event"),
        (
            json!({"org": slug}).to_string().into_bytes(),
            "missing field",
        ),
        (
            json!({"org": "no-such-org", "amount_cents": 1, "occurred_at": now,
                   "source_event_id": "x-1"})
            .to_string()
            .into_bytes(),
            "not found",
        ),
        (
            json!({"org": slug, "amount_cents": -5, "occurred_at": now,
                   "source_event_id": "x-2"})
            .to_string()
            .into_bytes(),
            "amount_cents",
        ),
        (
            json!({"org": slug, "amount_cents": 5, "occurred_at": now,
                   "source_event_id": "x-3", "extra": true})
            .to_string()
            .into_bytes(),
            "unknown field",
        ),
    ];
    for (n, (bytes, _)) in malformed.iter().enumerate() {
        messages.insert(n * 1200 + 7, (format!("k{n}"), bytes.clone()));
    }
    let brokers = broker.address.clone();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<(Option<&str>, &[u8])> = messages
            .iter()
            .map(|(k, v)| (Some(k.as_str()), v.as_slice()))
            .collect();
        produce(&brokers, TOPIC, &refs);
    })
    .await
    .unwrap();

    // Killed once some batches are stored and committed: no shutdown, no last commit.
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&client, &first, STORED).await < 1500.0 {
        assert!(
            Instant::now() < deadline,
            "the first process stored too little"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    // The new process takes the consumer lease once the dead one's runs out (15 s).
    let second = cluster.replica().await;
    let before = spent(&client, &second, &admin, slug).await;
    eprintln!("killed after {before} of {expected} cents were counted");
    assert!(
        before < expected,
        "the kill came after everything was counted"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now_spent = spent(&client, &second, &admin, slug).await;
        assert!(
            now_spent <= expected,
            "{now_spent} > {expected}: counted twice"
        );
        if now_spent == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {now_spent} of {expected} cents counted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Nothing counted late.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(spent(&client, &second, &admin, slug).await, expected);

    let brokers = broker.address.clone();
    let dead = tokio::task::spawn_blocking(move || {
        consume(&brokers, DLQ, usize::MAX, Duration::from_secs(3))
    })
    .await
    .unwrap();
    // At least once: a message dead-lettered just before the kill may be there twice, with
    // the same origin; consumers deduplicate by it.
    let mut by_origin: BTreeMap<(String, String), (Vec<u8>, String)> = BTreeMap::new();
    for m in &dead {
        let origin = (
            m.header(DLQ_PARTITION).unwrap().to_owned(),
            m.header(DLQ_OFFSET).unwrap().to_owned(),
        );
        let reason = m.header(DLQ_REASON).unwrap().to_owned();
        by_origin.insert(origin, (m.raw.clone(), reason));
    }
    let got: BTreeSet<&Vec<u8>> = by_origin.values().map(|(raw, _)| raw).collect();
    let want: BTreeSet<&Vec<u8>> = malformed.iter().map(|(raw, _)| raw).collect();
    assert_eq!(
        got, want,
        "exactly the malformed messages are dead-lettered"
    );
    for (raw, reason) in by_origin.values() {
        let (_, says) = malformed.iter().find(|(m, _)| m == raw).unwrap();
        assert!(
            reason.contains(says),
            "reason {reason:?} should say {says:?}"
        );
    }
    assert!(metric(&client, &second, "uos_usage_stream_active").await == 1.0);
    eprintln!("whole test: {:?}", started.elapsed());
}
