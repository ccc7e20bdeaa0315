//! The usage consumer against a real Kafka-protocol broker (tansu, started per test): what
//! reaches the sink, what reaches the dead-letter topic, and that offsets are committed only
//! after the sink has stored a batch.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use uos_events::testing::{consume, produce, Broker};
use uos_events::{
    Outcome, SinkError, UsageConsumer, UsageConsumerConfig, UsageSink, DLQ_OFFSET, DLQ_PARTITION,
    DLQ_REASON, DLQ_TOPIC,
};

const TOPIC: &str = "billing.usage";
const DLQ: &str = "billing.usage.dlq";

/// Takes JSON objects with an `id`: stored the first time, duplicates after; rejects the rest.
/// `fail_first` calls fail as if the store were down; with `hang`, calls never return.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Vec<u8>>>,
    calls: Mutex<Vec<Vec<Vec<u8>>>>,
    ids: Mutex<HashSet<String>>,
    fail_first: AtomicUsize,
    hang: bool,
}

#[async_trait]
impl UsageSink for Recorder {
    async fn take(&self, payloads: &[&[u8]]) -> Result<Vec<Outcome>, SinkError> {
        let owned: Vec<Vec<u8>> = payloads.iter().map(|p| p.to_vec()).collect();
        self.calls.lock().unwrap().push(owned.clone());
        if self.hang {
            self.seen.lock().unwrap().extend(owned.clone());
            std::future::pending::<()>().await;
        }
        if self
            .fail_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(SinkError("store down".into()));
        }
        self.seen.lock().unwrap().extend(owned);
        Ok(payloads
            .iter()
            .map(|p| match serde_json::from_slice::<serde_json::Value>(p) {
                Ok(v) => match v["id"].as_str() {
                    Some(id) if self.ids.lock().unwrap().insert(id.to_owned()) => Outcome::Stored,
                    Some(_) => Outcome::Duplicate,
                    None => Outcome::Rejected("no id".into()),
                },
                Err(e) => Outcome::Rejected(format!("not JSON: {e}")),
            })
            .collect())
    }
}

impl Recorder {
    fn seen(&self) -> Vec<Vec<u8>> {
        self.seen.lock().unwrap().clone()
    }
}

fn config(broker: &Broker, group: &str) -> UsageConsumerConfig {
    UsageConsumerConfig {
        backoff: Duration::from_millis(200),
        ..UsageConsumerConfig::new(&broker.address, TOPIC, DLQ, group)
    }
}

/// Runs a consumer of `group` into `sink` until the handle is aborted.
fn start(broker: &Broker, group: &str, sink: Arc<Recorder>) -> tokio::task::JoinHandle<()> {
    let consumer = UsageConsumer::new(config(broker, group)).unwrap();
    tokio::spawn(consumer.run(sink))
}

async fn until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}

fn event(id: &str) -> Vec<u8> {
    serde_json::json!({"id": id}).to_string().into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs tansu (a Kafka-protocol broker)"]
async fn good_messages_reach_the_sink_and_malformed_ones_the_dlq_with_their_reason() {
    let broker = Broker::start();
    let (a, b, c) = (event("a"), event("b"), event("c"));
    let sent: Vec<(Option<&str>, &[u8])> = vec![
        (Some("k1"), &a),
        (Some("k2"), b"not json"),
        (Some("k1"), &b),
        (None, br#"{"no":"id"}"#),
        (Some("k1"), &a),
        (Some("k3"), &c),
    ];
    produce(&broker.address, TOPIC, &sent);
    let sink = Arc::new(Recorder::default());
    let task = start(&broker, "g1", Arc::clone(&sink));
    until(
        "the sink saw every message",
        Duration::from_secs(20),
        || sink.seen().len() == 6,
    )
    .await;
    let mut payloads: Vec<Vec<u8>> = sent.iter().map(|(_, v)| v.to_vec()).collect();
    assert_eq!(
        sorted(sink.seen()),
        sorted(payloads.clone()),
        "every message"
    );
    // One key is one partition, consumed in order.
    payloads.retain(|p| p == &a || p == &b);
    let mut of_k1 = sink.seen();
    of_k1.retain(|p| p == &a || p == &b);
    assert_eq!(of_k1, payloads, "in partition order");

    let brokers = broker.address.clone();
    let dead =
        tokio::task::spawn_blocking(move || consume(&brokers, DLQ, 2, Duration::from_secs(20)))
            .await
            .unwrap();
    assert_eq!(
        dead.len(),
        2,
        "the two malformed messages are dead-lettered"
    );
    let not_json = dead
        .iter()
        .find(|m| m.raw == b"not json")
        .expect("the original bytes");
    assert_eq!(not_json.key, "k2", "the original key");
    assert!(
        not_json.header(DLQ_REASON).unwrap().starts_with("not JSON"),
        "{:?}",
        not_json.headers
    );
    let no_id = dead.iter().find(|m| m.raw == br#"{"no":"id"}"#).unwrap();
    assert_eq!(no_id.header(DLQ_REASON), Some("no id"));
    for m in &dead {
        assert_eq!(m.header(DLQ_TOPIC), Some(TOPIC));
        let partition: i32 = m.header(DLQ_PARTITION).unwrap().parse().unwrap();
        let offset: i64 = m.header(DLQ_OFFSET).unwrap().parse().unwrap();
        assert!(partition >= 0 && offset >= 0, "{:?}", m.headers);
    }
    task.abort();
    let _ = task.await;

    // A consumer of the same group starts after the committed offsets: only what is new.
    let d = event("d");
    produce(&broker.address, TOPIC, &[(None, &d)]);
    let next = Arc::new(Recorder::default());
    let task = start(&broker, "g1", Arc::clone(&next));
    until("the new message arrived", Duration::from_secs(20), || {
        !next.seen().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        next.seen(),
        vec![d],
        "committed messages were not delivered again"
    );
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs tansu (a Kafka-protocol broker)"]
async fn nothing_is_committed_before_the_sink_returns() {
    let broker = Broker::start();
    let events: Vec<Vec<u8>> = (0..5).map(|i| event(&format!("e{i}"))).collect();
    let sent: Vec<(Option<&str>, &[u8])> = events.iter().map(|e| (None, e.as_slice())).collect();
    produce(&broker.address, TOPIC, &sent);

    // A sink that fails twice (store down) is offered the same messages again.
    let flaky = Arc::new(Recorder {
        fail_first: AtomicUsize::new(2),
        ..Recorder::default()
    });
    let task = start(&broker, "g2", Arc::clone(&flaky));
    until("the batch was stored", Duration::from_secs(20), || {
        flaky.seen().len() == 5
    })
    .await;
    let calls = flaky.calls.lock().unwrap().clone();
    assert!(calls.len() >= 3, "{} calls", calls.len());
    assert_eq!(calls[1], calls[0], "the failed batch came again");
    assert_eq!(calls[2], calls[0], "the failed batch came again");
    assert_eq!(sorted(flaky.seen()), events);
    task.abort();
    let _ = task.await;

    // A consumer that dies while its sink works on the batch (it never returns) committed
    // nothing: the next consumer of the group gets the same messages.
    let more: Vec<Vec<u8>> = (5..8).map(|i| event(&format!("e{i}"))).collect();
    let sent: Vec<(Option<&str>, &[u8])> = more.iter().map(|e| (None, e.as_slice())).collect();
    produce(&broker.address, TOPIC, &sent);
    let stuck = Arc::new(Recorder {
        hang: true,
        ..Recorder::default()
    });
    let task = start(&broker, "g2", Arc::clone(&stuck));
    until(
        "the stuck sink got a batch",
        Duration::from_secs(20),
        || !stuck.seen().is_empty(),
    )
    .await;
    task.abort();
    let _ = task.await;
    let next = Arc::new(Recorder::default());
    let task = start(&broker, "g2", Arc::clone(&next));
    until("the batch came again", Duration::from_secs(20), || {
        next.seen().len() == 3
    })
    .await;
    assert_eq!(
        sorted(next.seen()),
        more,
        "redelivered from the last commit, no earlier"
    );
    task.abort();
}
