//! The audit stream end to end: admin-api processes on PostgreSQL publish every audit event to a
//! real Kafka-protocol broker (tansu), where a consumer verifies each chain from the messages
//! alone, through a `kill -9` of the publisher and a minute of broker outage.

use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uos_audit::AuditEvent;
use uos_events::testing::{consume, Broker};

use crate::replicas::{admin_token, audit_export, audit_keys, call, Cluster, Replica};

const TOPIC: &str = "uos.audit.v1";

/// A cluster whose replicas publish to `broker`, failing a send after 5 s without it.
async fn streaming_cluster(broker: &Broker) -> Cluster {
    Cluster::new(&[
        ("UOS_KAFKA__BROKERS", broker.address.as_str()),
        ("UOS_KAFKA__MESSAGE_TIMEOUT_SECS", "5"),
    ])
    .await
}

/// A replica of a new streaming cluster, a client and the admin's token on it. The cluster
/// goes with the replica's owner, who drops it after the replica.
async fn streaming_replica(broker: &Broker) -> (Cluster, Replica, reqwest::Client, String) {
    let cluster = streaming_cluster(broker).await;
    let r = cluster.replica().await;
    let client = reqwest::Client::new();
    let admin = admin_token(&client, &r).await;
    (cluster, r, client, admin)
}

/// The events on the topic, first delivery of each (redeliveries dropped), once every id in
/// `want` arrived or `timeout` passed.
async fn streamed(
    broker: &Broker,
    want: &HashSet<uuid::Uuid>,
    timeout: Duration,
) -> Vec<(AuditEvent, Value, String)> {
    let deadline = Instant::now() + timeout;
    loop {
        let brokers = broker.address.clone();
        let messages = tokio::task::spawn_blocking(move || {
            consume(&brokers, TOPIC, usize::MAX, Duration::from_secs(3))
        })
        .await
        .unwrap();
        let mut seen = HashSet::new();
        let mut events = Vec::new();
        for m in messages {
            let event: AuditEvent =
                serde_json::from_value(m.value.clone()).expect("every message is an audit event");
            assert_eq!(m.key, event.chain, "keyed by chain");
            assert_eq!(m.header("ce_id"), Some(event.id.to_string().as_str()));
            assert_eq!(m.header("ce_type"), Some(event.action.as_str()));
            assert_eq!(m.header("ce_specversion"), Some("1.0"));
            if seen.insert(event.id) {
                events.push((event, m.value, m.key));
            }
        }
        if want.is_subset(&seen) || Instant::now() > deadline {
            return events;
        }
    }
}

/// The ids of every event `r` serves.
async fn exported_ids(client: &reqwest::Client, r: &Replica, token: &str) -> HashSet<uuid::Uuid> {
    audit_export(client, r, token)
        .await
        .into_iter()
        .map(|e| e.id)
        .collect()
}

/// Creates org `slug` on `r`.
pub(crate) async fn create_org(client: &reqwest::Client, r: &Replica, token: &str, slug: &str) {
    let body = json!({"slug": slug, "display_name": slug});
    let (status, body) = call(
        client,
        r,
        reqwest::Method::POST,
        "/v1/orgs",
        token,
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

/// Creates role `name` in org `slug` on `base`; the status, or `None` when nothing answered
/// (the process is gone).
async fn create_role(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    slug: &str,
    name: &str,
) -> Option<u16> {
    let res = client
        .post(format!("{base}/v1/orgs/{slug}/roles"))
        .bearer_auth(token)
        .json(&json!({"name": name, "permissions": ["invites:read"]}))
        .send()
        .await
        .ok()?;
    Some(res.status().as_u16())
}

/// `name` on `r`'s `/metrics`.
pub(crate) async fn metric(client: &reqwest::Client, r: &Replica, name: &str) -> f64 {
    let text = client
        .get(format!("{}/metrics", r.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} on /metrics"))
}

/// Each chain of `events` (first deliveries, in the order consumed) verifies from the
/// messages alone: every event, in seq order, from genesis.
fn verify_from_messages(events: &[(AuditEvent, Value, String)], keys: &[uos_keys::PublicKey]) {
    let only: Vec<AuditEvent> = events.iter().map(|(e, _, _)| e.clone()).collect();
    uos_audit::verify_chains(&only, keys).expect("each chain verifies from its messages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL, Redis and tansu"]
async fn every_event_reaches_the_topic_as_served_and_each_chain_verifies_from_it() {
    let broker = Broker::start();
    let (_cluster, r, client, admin) = streaming_replica(&broker).await;
    for slug in ["s-one", "s-two", "s-three"] {
        create_org(&client, &r, &admin, slug).await;
        for i in 0..3 {
            let status = create_role(&client, &r.base, &admin, slug, &format!("r{i}")).await;
            assert_eq!(status, Some(201));
        }
    }
    let served = audit_export(&client, &r, &admin).await;
    let want: HashSet<_> = served.iter().map(|e| e.id).collect();
    let events = streamed(&broker, &want, Duration::from_secs(60)).await;
    let got: HashSet<_> = events.iter().map(|(e, _, _)| e.id).collect();
    assert!(
        want.is_subset(&got),
        "{} of {} events on the topic",
        got.len(),
        want.len()
    );
    for e in &served {
        let (_, value, _) = events.iter().find(|(m, _, _)| m.id == e.id).unwrap();
        // What a reader may decrypt is added for that reader; the stream carries personal
        // data only as the ciphertext the hash covers, so erasure reaches retained messages.
        assert!(value.get("personal").is_none() && value.get("erased").is_none());
        let mut sealed = e.clone();
        sealed.personal.clear();
        sealed.erased.clear();
        assert_eq!(
            serde_json::from_value::<AuditEvent>(value.clone()).unwrap(),
            sealed,
            "the value is the sealed event as the API serves it"
        );
    }
    assert!(
        served.iter().any(|e| !e.personal.is_empty()),
        "some events carry personal data (the admin's email in member.added)"
    );
    verify_from_messages(&events, &audit_keys(&client, &r, &admin).await);
    assert_eq!(metric(&client, &r, "uos_audit_relay_leader").await, 1.0);
    assert_eq!(
        metric(&client, &r, "uos_audit_relay_behind_events").await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL, Redis and tansu"]
async fn after_a_kill_9_under_write_load_every_acknowledged_change_is_streamed_in_order() {
    let broker = Broker::start();
    let (cluster, mut first, client, admin) = streaming_replica(&broker).await;
    for slug in ["k-one", "k-two"] {
        create_org(&client, &first, &admin, slug).await;
    }
    // Four writers, each creating roles until the process is gone; what answered 201 was
    // acknowledged.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (client, base, admin, acked) = (
                client.clone(),
                first.base.clone(),
                admin.clone(),
                acked.clone(),
            );
            tokio::spawn(async move {
                for i in 0.. {
                    let (slug, name) = (["k-one", "k-two"][i % 2], format!("w{w}-{i}"));
                    match create_role(&client, &base, &admin, slug, &name).await {
                        Some(201) => acked.lock().unwrap().push(name),
                        Some(status) => panic!("{name}: {status}"),
                        None => return,
                    }
                }
            })
        })
        .collect();
    while acked.lock().unwrap().len() < 60 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.child.kill().unwrap(); // SIGKILL: no shutdown, no flush.
    first.child.wait().unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let second = cluster.replica().await;
    let admin = admin_token(&client, &second).await;
    let want = exported_ids(&client, &second, &admin).await;
    let events = streamed(&broker, &want, Duration::from_secs(90)).await;
    let got: HashSet<_> = events.iter().map(|(e, _, _)| e.id).collect();
    assert!(
        want.is_subset(&got),
        "{} of {} events on the topic",
        got.len(),
        want.len()
    );
    let streamed_roles: HashSet<&str> = events
        .iter()
        .filter(|(e, _, _)| e.action == "role.created")
        .filter_map(|(e, _, _)| e.target.id.as_deref())
        .collect();
    for name in &acked {
        assert!(
            streamed_roles.contains(name.as_str()),
            "acknowledged {name} was not streamed"
        );
    }
    verify_from_messages(&events, &audit_keys(&client, &second, &admin).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL, Redis and tansu"]
async fn a_broker_gone_for_a_minute_fails_no_write_and_loses_no_event() {
    let broker = Broker::start();
    let (_cluster, r, client, admin) = streaming_replica(&broker).await;
    // An org holds at most 100 custom roles: the writes spread over several.
    let orgs = ["o-1", "o-2", "o-3", "o-4", "o-5"];
    for slug in orgs {
        create_org(&client, &r, &admin, slug).await;
    }
    broker.pause();
    let paused = Instant::now();
    let mut i = 0;
    let mut checked = false;
    while paused.elapsed() < Duration::from_secs(60) {
        let slug = orgs[i % orgs.len()];
        let status = create_role(&client, &r.base, &admin, slug, &format!("p{i}")).await;
        assert_eq!(status, Some(201), "write {i} during the outage");
        i += 1;
        if !checked && paused.elapsed() > Duration::from_secs(20) {
            let ready = client
                .get(format!("{}/readyz", r.base))
                .send()
                .await
                .unwrap();
            assert_eq!(
                ready.status(),
                200,
                "the broker is not a readiness dependency"
            );
            assert!(metric(&client, &r, "uos_audit_relay_behind_events").await > 0.0);
            checked = true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    broker.resume();
    for j in 0..10 {
        let status = create_role(&client, &r.base, &admin, orgs[j % 5], &format!("after{j}")).await;
        assert_eq!(status, Some(201));
    }
    let want = exported_ids(&client, &r, &admin).await;
    let events = streamed(&broker, &want, Duration::from_secs(120)).await;
    let got: HashSet<_> = events.iter().map(|(e, _, _)| e.id).collect();
    assert!(
        want.is_subset(&got),
        "{} of {} events on the topic",
        got.len(),
        want.len()
    );
    verify_from_messages(&events, &audit_keys(&client, &r, &admin).await);
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&client, &r, "uos_audit_relay_behind_events").await > 0.0 {
        assert!(Instant::now() < deadline, "the backlog drained");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
