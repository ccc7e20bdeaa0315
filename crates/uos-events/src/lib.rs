//! The event stream's port and its Kafka adapter: audit events published in chain order, each
//! as the API serves it, keyed by its chain, with CloudEvents headers; and usage events
//! consumed from `billing.usage` into a [`UsageSink`], at least once.
//!
//! The relay that reads the audit table as an outbox and calls [`AuditPublisher`], and the
//! sink that counts usage, live with the other use cases in `uos-service`; this crate only
//! talks to Kafka.

mod kafka;
pub mod testing;
mod usage;

pub use kafka::{KafkaConfig, KafkaPublisher};
pub use usage::{
    ConsumerError, Outcome, SinkError, UsageConsumer, UsageConsumerConfig, UsageSink,
    UsageStreamCounts, UsageStreamStats, DLQ_OFFSET, DLQ_PARTITION, DLQ_REASON, DLQ_TOPIC,
};

use async_trait::async_trait;
use uos_store::AuditRow;

/// Where audit events go.
#[async_trait]
pub trait AuditPublisher: Send + Sync + std::fmt::Debug {
    /// Publishes `events` in the order given and waits until the destination has each; one
    /// result per event, in the same order. A failed event is retried by the caller, so the
    /// events of its chain after it must not count as published either (they may well have
    /// been: delivery is at least once).
    async fn publish(&self, events: &[AuditRow]) -> Vec<Result<(), PublishError>>;
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("kafka: {0}")]
    Kafka(String),
    #[error("event cannot be published: {0}")]
    Event(String),
}
