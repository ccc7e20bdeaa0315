#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The Kafka publisher and the usage consumer against a real Kafka-protocol broker (tansu,
//! started per test).

mod usage;

use std::time::Duration;

use serde_json::json;
use uos_events::testing::{consume, Broker};
use uos_events::{AuditPublisher, KafkaConfig, KafkaPublisher};
use uos_store::AuditRow;
use uuid::Uuid;

const TOPIC: &str = "uos.audit.v1";

fn publisher(brokers: &str, timeout: Duration) -> KafkaPublisher {
    KafkaPublisher::new(KafkaConfig {
        brokers: brokers.into(),
        topic: TOPIC.into(),
        source: "https://id.example.com".into(),
        message_timeout: timeout,
    })
    .unwrap()
}

/// Event `seq` of `chain`, its payload as the API would serve it.
fn row(chain: &str, seq: i64) -> AuditRow {
    let id = Uuid::now_v7();
    AuditRow {
        chain: chain.into(),
        seq,
        id,
        occurred_at: chrono::Utc::now(),
        org_id: None,
        actor_id: None,
        action: "org.updated".into(),
        target_id: Some("t-1".into()),
        hash: format!("{seq:064x}"),
        payload: json!({
            "id": id, "chain": chain, "seq": seq, "action": "org.updated",
            "occurred_at": "2026-12-06T08:00:00.123456Z",
            "target": {"type": "org", "id": "t-1"},
        }),
        trace_parent: None,
    }
}

#[test]
#[ignore = "needs tansu (a Kafka-protocol broker)"]
fn events_arrive_in_chain_order_with_their_key_value_and_cloudevents_headers() {
    let broker = Broker::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let publisher = publisher(&broker.address, Duration::from_secs(20));
    let rows: Vec<AuditRow> = (1..=20)
        .map(|i| row(if i % 3 == 0 { "platform" } else { "org:a" }, i))
        .collect();
    let results = rt.block_on(publisher.publish(&rows));
    assert!(results.iter().all(Result::is_ok), "{results:?}");

    let got = consume(&broker.address, TOPIC, rows.len(), Duration::from_secs(30));
    assert_eq!(got.len(), rows.len(), "every event arrived");
    for chain in ["org:a", "platform"] {
        let sent: Vec<_> = rows.iter().filter(|r| r.chain == chain).collect();
        let received: Vec<_> = got.iter().filter(|m| m.key == chain).collect();
        assert_eq!(
            received.iter().map(|m| m.value.clone()).collect::<Vec<_>>(),
            sent.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(),
            "chain {chain}: the served JSON, in chain order"
        );
    }
    let first = got.iter().find(|m| m.key == "org:a").unwrap();
    let id = rows[0].id.to_string();
    for (name, value) in [
        ("ce_specversion", "1.0"),
        ("ce_id", id.as_str()),
        ("ce_type", "org.updated"),
        ("ce_source", "https://id.example.com"),
        ("ce_time", "2026-12-06T08:00:00.123456Z"),
        ("ce_subject", "org/t-1"),
        ("content-type", "application/json"),
    ] {
        assert_eq!(first.header(name), Some(value), "header {name}");
    }
}

#[test]
#[ignore = "needs tansu (a Kafka-protocol broker)"]
fn an_unreachable_broker_fails_each_send_within_the_timeout() {
    // Nothing listens here: every send fails, none hangs.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let publisher = publisher(&format!("127.0.0.1:{port}"), Duration::from_secs(2));
    let started = std::time::Instant::now();
    let results = rt.block_on(publisher.publish(&[row("org:a", 1), row("org:a", 2)]));
    assert!(results.iter().all(Result::is_err), "{results:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
#[ignore = "needs tansu (a Kafka-protocol broker)"]
fn a_producer_fenced_after_an_outage_is_replaced_and_sends_again() {
    let broker = Broker::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let publisher = publisher(&broker.address, Duration::from_secs(2));
    assert!(rt.block_on(publisher.publish(&[row("org:a", 1)]))[0].is_ok());
    broker.pause();
    let during = rt.block_on(publisher.publish(&[row("org:a", 2)]));
    assert!(during[0].is_err(), "a frozen broker times the send out");
    broker.resume();
    // The timed-out producer bumps its epoch and tansu fences it: one round fails, then the
    // new producer sends.
    let sent = (0..5).any(|_| rt.block_on(publisher.publish(&[row("org:a", 2)]))[0].is_ok());
    assert!(sent, "sending again after the outage");
    let got = consume(&broker.address, TOPIC, 2, Duration::from_secs(30));
    let seqs: Vec<_> = got.iter().map(|m| m.value["seq"].clone()).collect();
    assert_eq!(seqs, [json!(1), json!(2)]);
}
