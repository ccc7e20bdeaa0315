//! Consuming usage events from Kafka (`billing.usage`), at least once: a batch is handed to a
//! [`UsageSink`] (the service, which stores the spend), the messages it rejects are written to
//! the dead-letter topic, and only then are the batch's offsets committed to the consumer
//! group. A crash anywhere before the commit means the batch comes again, which the sink
//! absorbs by deduplicating (each event counts once per org and `source_event_id`).
//!
//! Partitions are *assigned* (every partition of the topic, from the group's committed
//! offsets), not subscribed: a group rebalance would hand partitions over between replicas,
//! but costs seconds before the first message (about 23 s with tansu) and after each crash.
//! One replica at a time consumes instead, under a lease the sink holds
//! ([`UsageSink::may_consume`]); offsets still live in the group, so any replica resumes
//! where the last one committed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

/// The header of a dead-lettered message that says why it was refused.
pub const DLQ_REASON: &str = "uos-dlq-reason";
/// Where a dead-lettered message came from: its topic, partition and offset.
pub const DLQ_TOPIC: &str = "uos-dlq-topic";
pub const DLQ_PARTITION: &str = "uos-dlq-partition";
pub const DLQ_OFFSET: &str = "uos-dlq-offset";

/// What the consumer needs to know.
#[derive(Clone, Debug)]
pub struct UsageConsumerConfig {
    /// Comma-separated `host:port` of bootstrap brokers.
    pub brokers: String,
    /// The topic usage events are read from (`billing.usage`).
    pub topic: String,
    /// Where messages the sink rejects go, with the reason (`billing.usage.dlq`).
    pub dlq_topic: String,
    /// The consumer group whose committed offsets say how far the stream was counted.
    pub group: String,
    /// Most messages handed to the sink at once.
    pub batch_max: usize,
    /// Pause after a failed step (store or broker unavailable) before trying it again.
    pub backoff: Duration,
    /// How long a dead-letter message may wait for the brokers before its send fails.
    pub message_timeout: Duration,
}

impl UsageConsumerConfig {
    /// `brokers`, the topics and the group with the defaults for the rest.
    pub fn new(brokers: &str, topic: &str, dlq_topic: &str, group: &str) -> Self {
        Self {
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
            dlq_topic: dlq_topic.to_owned(),
            group: group.to_owned(),
            batch_max: 500,
            backoff: Duration::from_secs(1),
            message_timeout: Duration::from_secs(30),
        }
    }
}

/// What became of one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Counted now.
    Stored,
    /// Counted before (a redelivery or a repeat of the same event).
    Duplicate,
    /// Never to be counted; goes to the dead-letter topic with this reason.
    Rejected(String),
}

/// The sink could take nothing of the batch now (its store is unavailable): the same
/// messages are offered again after a pause.
#[derive(Debug, thiserror::Error)]
#[error("usage not stored: {0}")]
pub struct SinkError(pub String);

/// Where consumed usage goes.
#[async_trait]
pub trait UsageSink: Send + Sync {
    /// Stores what it can of `payloads` (message values, in partition order; empty for a
    /// message without one) durably before it returns, and says what became of each, in the
    /// same order. An error means nothing may be taken as stored.
    async fn take(&self, payloads: &[&[u8]]) -> Result<Vec<Outcome>, SinkError>;

    /// Whether this replica should consume now (it holds the consumer lease). Asked before
    /// every batch; while false, the consumer holds no partitions.
    async fn may_consume(&self) -> bool {
        true
    }
}

/// What `/metrics` reports of the consumer.
#[derive(Debug, Default)]
pub struct UsageStreamStats {
    consumed: AtomicU64,
    stored: AtomicU64,
    duplicates: AtomicU64,
    rejected: AtomicU64,
    lag: AtomicU64,
    active: AtomicBool,
}

/// A reading of [`UsageStreamStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsageStreamCounts {
    /// Messages handed to the sink (a redelivered one counts again).
    pub consumed: u64,
    pub stored: u64,
    pub duplicates: u64,
    /// Messages written to the dead-letter topic.
    pub rejected: u64,
    /// Messages on the topic past this consumer's position, as last seen (0 while inactive).
    pub lag: u64,
    /// Whether this replica is the one consuming.
    pub active: bool,
}

impl UsageStreamStats {
    pub fn counts(&self) -> UsageStreamCounts {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        UsageStreamCounts {
            consumed: get(&self.consumed),
            stored: get(&self.stored),
            duplicates: get(&self.duplicates),
            rejected: get(&self.rejected),
            lag: get(&self.lag),
            active: self.active.load(Ordering::Relaxed),
        }
    }
}

/// Why the consumer could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("kafka: {0}")]
pub struct ConsumerError(String);

impl From<KafkaError> for ConsumerError {
    fn from(e: KafkaError) -> Self {
        Self(e.to_string())
    }
}

/// The consumer: a group-less fetch of every partition, and a producer for the dead letters.
pub struct UsageConsumer {
    consumer: Arc<StreamConsumer>,
    producer: FutureProducer,
    cfg: UsageConsumerConfig,
    stats: Arc<UsageStreamStats>,
}

impl std::fmt::Debug for UsageConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageConsumer")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// How long a step may wait for metadata or a commit before it counts as failed.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for a first message before looking at the lease and the lag again.
const POLL: Duration = Duration::from_millis(500);
/// After the first message of a batch, how long to wait for more.
const FILL: Duration = Duration::from_millis(20);
/// How often the lag is measured.
const LAG_EVERY: Duration = Duration::from_secs(5);
/// How often a replica without the lease asks for it again.
const IDLE: Duration = Duration::from_secs(1);

impl UsageConsumer {
    /// A consumer for `cfg`. Nothing is contacted yet: brokers that are down delay
    /// consumption, they do not stop the service.
    pub fn new(cfg: UsageConsumerConfig) -> Result<Self, ConsumerError> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &cfg.brokers)
            .set("group.id", &cfg.group)
            // Offsets move only by the explicit commit after the sink and the DLQ.
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // A group that never committed starts at the oldest retained event.
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "100")
            .create()?;
        let timeout_ms = cfg.message_timeout.as_millis().max(1).to_string();
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &cfg.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", &timeout_ms)
            .create()?;
        Ok(Self {
            consumer: Arc::new(consumer),
            producer,
            cfg,
            stats: Arc::default(),
        })
    }

    /// The figures this consumer keeps, shared with whoever reports them.
    pub fn stats(&self) -> Arc<UsageStreamStats> {
        Arc::clone(&self.stats)
    }

    /// Consumes until the task is dropped. Every failure is logged and retried after the
    /// backoff; nothing here ends the loop.
    pub async fn run(self, sink: Arc<dyn UsageSink>) {
        let mut assigned = false;
        let mut lag_seen = Instant::now();
        loop {
            if !sink.may_consume().await {
                if assigned {
                    if let Err(e) = self.consumer.unassign() {
                        tracing::warn!(error = %e, "usage consumer: unassign failed");
                    }
                    assigned = false;
                    self.stats.active.store(false, Ordering::Relaxed);
                    self.stats.lag.store(0, Ordering::Relaxed);
                }
                tokio::time::sleep(IDLE).await;
                continue;
            }
            if !assigned {
                match self.assign().await {
                    Ok(n) => {
                        tracing::info!(topic = %self.cfg.topic, partitions = n, "consuming usage");
                        assigned = true;
                        self.stats.active.store(true, Ordering::Relaxed);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "usage consumer cannot start; retrying");
                        tokio::time::sleep(self.cfg.backoff).await;
                        continue;
                    }
                }
            }
            let batch = self.next_batch().await;
            if !batch.is_empty() {
                self.handle(&batch, sink.as_ref()).await;
            }
            if lag_seen.elapsed() >= LAG_EVERY {
                self.note_lag().await;
                lag_seen = Instant::now();
            }
        }
    }

    /// Assigns every partition of the topic from the group's committed offsets (`Stored`:
    /// librdkafka fetches them; `auto.offset.reset` where there are none). The number of
    /// partitions.
    async fn assign(&self) -> Result<usize, ConsumerError> {
        let consumer = Arc::clone(&self.consumer);
        let topic = self.cfg.topic.clone();
        // Metadata is a blocking call.
        let partitions = tokio::task::spawn_blocking(move || {
            let meta = consumer.fetch_metadata(Some(&topic), BROKER_TIMEOUT)?;
            let ids: Vec<i32> = meta
                .topics()
                .iter()
                .filter(|t| t.name() == topic && t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            Ok::<_, ConsumerError>(ids)
        })
        .await
        .map_err(|e| ConsumerError(e.to_string()))??;
        if partitions.is_empty() {
            return Err(ConsumerError(format!(
                "topic {} has no partitions (yet)",
                self.cfg.topic
            )));
        }
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition_offset(&self.cfg.topic, *p, Offset::Stored)?;
        }
        self.consumer.assign(&tpl)?;
        Ok(partitions.len())
    }

    /// Up to `batch_max` messages: waits up to [`POLL`] for the first, then takes what
    /// arrives within [`FILL`].
    async fn next_batch(&self) -> Vec<OwnedMessage> {
        let mut batch = Vec::new();
        let mut wait = POLL;
        while batch.len() < self.cfg.batch_max {
            match tokio::time::timeout(wait, self.consumer.recv()).await {
                Ok(Ok(m)) => batch.push(m.detach()),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "usage consumer: fetch failed");
                    break;
                }
                Err(_) => break,
            }
            wait = FILL;
        }
        batch
    }

    /// The sink, then the dead letters, then the commit: each retried until it succeeds, so
    /// the commit never gets ahead of what is stored.
    async fn handle(&self, batch: &[OwnedMessage], sink: &dyn UsageSink) {
        let payloads: Vec<&[u8]> = batch
            .iter()
            .map(|m| m.payload().unwrap_or_default())
            .collect();
        let outcomes = loop {
            self.stats
                .consumed
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            match sink.take(&payloads).await {
                Ok(o) if o.len() == batch.len() => break o,
                Ok(o) => tracing::error!(
                    given = batch.len(),
                    answered = o.len(),
                    "usage sink answered for a different number of messages; offering them again"
                ),
                Err(e) => tracing::warn!(error = %e, "usage batch not stored; offering it again"),
            }
            tokio::time::sleep(self.cfg.backoff).await;
        };
        let mut dead: Vec<(&OwnedMessage, &str)> = Vec::new();
        for (m, outcome) in batch.iter().zip(&outcomes) {
            let counter = match outcome {
                Outcome::Stored => &self.stats.stored,
                Outcome::Duplicate => &self.stats.duplicates,
                Outcome::Rejected(reason) => {
                    dead.push((m, reason.as_str()));
                    continue;
                }
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        while !dead.is_empty() {
            let failed = self.dead_letter(&dead).await;
            let sent = dead.len() - failed.len();
            self.stats
                .rejected
                .fetch_add(sent as u64, Ordering::Relaxed);
            dead = failed;
            if !dead.is_empty() {
                tokio::time::sleep(self.cfg.backoff).await;
            }
        }
        while let Err(e) = self.commit(batch).await {
            tracing::warn!(error = %e, "usage offsets not committed; retrying");
            tokio::time::sleep(self.cfg.backoff).await;
        }
    }

    /// Writes each rejected message to the dead-letter topic and waits for the brokers to
    /// have it; returns those that failed.
    async fn dead_letter<'m>(
        &self,
        dead: &[(&'m OwnedMessage, &'m str)],
    ) -> Vec<(&'m OwnedMessage, &'m str)> {
        let mut pending = Vec::with_capacity(dead.len());
        for (m, reason) in dead {
            let record = FutureRecord::<[u8], [u8]>::to(&self.cfg.dlq_topic)
                .payload(m.payload().unwrap_or_default())
                .headers(dead_headers(m, reason));
            let record = match m.key() {
                Some(key) => record.key(key),
                None => record,
            };
            pending.push(
                self.producer
                    .send_result(record)
                    .map_err(|(e, _)| e.to_string()),
            );
        }
        let mut failed = Vec::new();
        for (sent, item) in pending.into_iter().zip(dead) {
            let result = match sent {
                Ok(delivery) => match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((e, _))) => Err(e.to_string()),
                    Err(_) => Err("producer dropped the message".to_owned()),
                },
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "usage dead letter not written; retrying");
                failed.push(*item);
            }
        }
        failed
    }

    /// Commits, per partition, the offset after the last message of `batch`.
    async fn commit(&self, batch: &[OwnedMessage]) -> Result<(), ConsumerError> {
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for m in batch {
            let at = next.entry(m.partition()).or_default();
            *at = (*at).max(m.offset() + 1);
        }
        let mut tpl = TopicPartitionList::new();
        for (p, offset) in next {
            tpl.add_partition_offset(&self.cfg.topic, p, Offset::Offset(offset))?;
        }
        let consumer = Arc::clone(&self.consumer);
        // A synchronous commit blocks until the coordinator answers.
        tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync))
            .await
            .map_err(|e| ConsumerError(e.to_string()))??;
        Ok(())
    }

    /// Messages past this consumer's position: the high watermark of each partition (one
    /// request per partition, so it is asked at most every [`LAG_EVERY`]) less the position.
    async fn note_lag(&self) {
        let consumer = Arc::clone(&self.consumer);
        let lag = tokio::task::spawn_blocking(move || {
            let positions = consumer.position().ok()?;
            let mut lag = 0u64;
            for e in positions.elements() {
                let Offset::Offset(at) = e.offset() else {
                    continue;
                };
                let (_, high) = consumer
                    .fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(2))
                    .ok()?;
                lag += u64::try_from(high - at).unwrap_or(0);
            }
            Some(lag)
        })
        .await;
        if let Ok(Some(lag)) = lag {
            self.stats.lag.store(lag, Ordering::Relaxed);
        }
    }
}

/// The original message's headers, then where it came from and why it was refused.
fn dead_headers(m: &OwnedMessage, reason: &str) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new();
    if let Some(original) = m.headers() {
        for h in original.iter() {
            headers = headers.insert(Header {
                key: h.key,
                value: h.value,
            });
        }
    }
    let partition = m.partition().to_string();
    let offset = m.offset().to_string();
    [
        (DLQ_REASON, reason),
        (DLQ_TOPIC, m.topic()),
        (DLQ_PARTITION, partition.as_str()),
        (DLQ_OFFSET, offset.as_str()),
    ]
    .into_iter()
    .fold(headers, |h, (key, value)| {
        h.insert(Header {
            key,
            value: Some(value),
        })
    })
}
