//! Creates the relay's topics at start-up when they are missing, with the configured
//! partitions, replication factor and (when set) `min.insync.replicas`.

use super::{client_config, Topics};
use crate::config::Config;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::time::Duration;

/// Creates every topic of `topics` that does not exist yet; the idempotency topic is compacted.
/// Existing topics are left as they are (their partition counts are the operator's).
pub async fn ensure_topics(cfg: &Config, topics: &Topics) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = client_config(cfg, &[]).create()?;
    let replication = || TopicReplication::Fixed(cfg.topic_replication);
    let min_isr = cfg.topic_min_insync_replicas.map(|n| n.to_string());
    let new_topic = |name| {
        let topic = NewTopic::new(name, cfg.topic_partitions, replication());
        match &min_isr {
            Some(n) => topic.set("min.insync.replicas", n),
            None => topic,
        }
    };
    let mut new_topics: Vec<NewTopic> = std::iter::once(&topics.raw)
        .chain(&topics.retry)
        .chain([&topics.dlq, &topics.enriched])
        .map(|name| new_topic(name))
        .collect();
    // Every event id is a distinct key, so compaction alone keeps them all. With
    // RELAY_IDEMPOTENCY_RETENTION set, marks older than that are deleted too (not the
    // default: once a mark is deleted, a redelivery of that event would be synced again).
    let retention_ms = cfg.idempotency_retention.map(|r| r.as_millis().to_string());
    let mut idempotency = new_topic(&topics.idempotency);
    idempotency = match &retention_ms {
        Some(ms) => idempotency
            .set("cleanup.policy", "compact,delete")
            .set("retention.ms", ms),
        None => idempotency.set("cleanup.policy", "compact"),
    };
    new_topics.push(idempotency);
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new_topics, &opts).await? {
        match result {
            Ok(name) => tracing::info!(topic = %name, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(KafkaError::AdminOp(code)).inspect_err(
                    |_| tracing::error!(topic = %name, error = %code, "cannot create topic"),
                )
            }
        }
    }
    Ok(())
}
