//! Publishing to Kafka with rdkafka: an idempotent producer (so retries neither duplicate nor
//! reorder within a partition), every replica acknowledging (`acks=all`), the chain as the key
//! (so one chain is one partition, in order).

use async_trait::async_trait;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tracing::Instrument as _;
use uos_store::AuditRow;

use crate::{AuditPublisher, PublishError};

/// What the publisher needs to know.
#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` of bootstrap brokers.
    pub brokers: String,
    /// The topic audit events go to (`uos.audit.v1`).
    pub topic: String,
    /// `ce_source` of every event: the URL the service is reached at.
    pub source: String,
    /// How long one message may wait for the broker before its send fails (and the relay
    /// tries again from where it got to).
    pub message_timeout: Duration,
}

pub struct KafkaPublisher {
    /// Replaced when it fails fatally (see [`KafkaPublisher::publish`]).
    producer: Mutex<Arc<FutureProducer>>,
    cfg: KafkaConfig,
}

impl std::fmt::Debug for KafkaPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaPublisher")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl KafkaPublisher {
    /// A producer for `cfg`. Nothing is contacted yet: a broker that is down delays delivery,
    /// it does not stop the service.
    pub fn new(cfg: KafkaConfig) -> Result<Self, PublishError> {
        let producer = Mutex::new(Arc::new(producer(&cfg)?));
        Ok(Self { producer, cfg })
    }

    fn current(&self) -> Arc<FutureProducer> {
        self.producer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A producer that failed fatally refuses every message from then on; the next round
    /// gets a new one (with a new producer id, so its sequence numbers start afresh).
    fn replace(&self, used: &Arc<FutureProducer>, why: &str) {
        tracing::warn!(
            reason = why,
            "kafka producer cannot go on; starting a new one"
        );
        match producer(&self.cfg) {
            Ok(fresh) => {
                let mut slot = self.producer.lock().unwrap_or_else(PoisonError::into_inner);
                if Arc::ptr_eq(&slot, used) {
                    *slot = Arc::new(fresh);
                }
            }
            Err(e) => tracing::warn!(error = %e, "kafka producer not replaced; retrying"),
        }
    }
}

/// Whether `e` leaves the idempotent producer unable to send anything more. After a delivery
/// timeout it bumps its epoch, and a broker may answer that by fencing it (tansu does).
fn ends_producer(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::OutOfOrderSequenceNumber
                | RDKafkaErrorCode::UnknownProducerId
                | RDKafkaErrorCode::Fatal
        )
    )
}

fn producer(cfg: &KafkaConfig) -> Result<FutureProducer, PublishError> {
    let timeout_ms = cfg.message_timeout.as_millis().max(1).to_string();
    ClientConfig::new()
        .set("bootstrap.servers", &cfg.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", &timeout_ms)
        .set("linger.ms", "5")
        .create()
        .map_err(|e| PublishError::Kafka(e.to_string()))
}

/// The span of one event's publication, from enqueued to acknowledged: a producer span of the
/// trace the event was recorded in, when there is one.
fn publish_span(row: &AuditRow, topic: &str) -> tracing::Span {
    let span = tracing::debug_span!(
        "publish",
        otel.name = format!("{topic} publish"),
        otel.kind = "producer",
        messaging.system = "kafka",
        messaging.operation.type = "send",
        messaging.destination.name = topic,
        messaging.message.id = %row.id,
        messaging.kafka.message.key = row.chain.as_str(),
    );
    uos_telemetry::continue_trace(&span, row.trace_parent.as_deref());
    span
}

/// The CloudEvents headers (binary content mode) of `row`, whose payload is the event as served,
/// and its trace context: the publish span's when traces are exported here, else the one it
/// was recorded in (a consumer continues the trace either way).
fn headers(row: &AuditRow, source: &str, span: &tracing::Span) -> OwnedHeaders {
    let e = &row.payload;
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let subject = format!(
        "{}/{}",
        text(&e["target"]["type"]),
        text(&e["target"]["id"])
    );
    let id = row.id.to_string();
    let time = text(&e["occurred_at"]);
    let headers = [
        ("ce_specversion", "1.0"),
        ("ce_id", id.as_str()),
        ("ce_type", row.action.as_str()),
        ("ce_source", source),
        ("ce_time", time.as_str()),
        ("ce_subject", subject.as_str()),
        ("content-type", "application/json"),
    ]
    .into_iter()
    .fold(OwnedHeaders::new(), |h, (key, value)| {
        h.insert(Header {
            key,
            value: Some(value),
        })
    });
    match uos_telemetry::traceparent_of(span).or_else(|| row.trace_parent.clone()) {
        Some(parent) => headers.insert(Header {
            key: uos_telemetry::TRACEPARENT,
            value: Some(parent.as_str()),
        }),
        None => headers,
    }
}

#[async_trait]
impl AuditPublisher for KafkaPublisher {
    async fn publish(&self, events: &[AuditRow]) -> Vec<Result<(), PublishError>> {
        // All enqueued first, then awaited: the producer batches them, and its idempotence
        // keeps each partition in the order enqueued.
        let producer = self.current();
        let mut pending = Vec::with_capacity(events.len());
        for row in events {
            let span = publish_span(row, &self.cfg.topic);
            let value = row.payload.to_string();
            let record = FutureRecord::to(&self.cfg.topic)
                .key(row.chain.as_str())
                .payload(value.as_str())
                .headers(headers(row, &self.cfg.source, &span));
            let sent = producer
                .send_result(record)
                .map_err(|(e, _)| PublishError::Kafka(e.to_string()));
            pending.push((sent, span));
        }
        let mut results = Vec::with_capacity(pending.len());
        let mut finished: Option<String> = None;
        // Each span ends when its event is acknowledged (or refused) and the span is dropped.
        for (sent, span) in pending {
            results.push(match sent {
                Ok(delivery) => match delivery.instrument(span).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((e, _))) => {
                        if ends_producer(&e) {
                            finished.get_or_insert_with(|| e.to_string());
                        }
                        Err(PublishError::Kafka(e.to_string()))
                    }
                    Err(_) => Err(PublishError::Kafka("producer dropped the message".into())),
                },
                Err(e) => Err(e),
            });
        }
        if let Some((code, reason)) = producer.client().fatal_error() {
            finished.get_or_insert_with(|| format!("{code:?}: {reason}"));
        }
        if let Some(why) = finished {
            self.replace(&producer, &why);
        }
        results
    }
}
