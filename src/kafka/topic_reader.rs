//! Reads a topic from the beginning to its current end without a consumer group:
//! used to list dead letters and to warm the idempotency cache.

use super::client_config;
use crate::config::Config;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::time::Duration;

/// Calls `visit` for every record of `topic` present when the call started, in partition order.
/// Blocking: run it on a blocking thread. Not reaching the end within the time limit is
/// an error (`OperationTimedOut`), never a silently partial read.
pub fn read_topic_to_end(
    cfg: &Config,
    topic: &str,
    visit: impl FnMut(OwnedMessage),
) -> Result<u64, KafkaError> {
    read_topic_to_end_within(cfg, topic, Duration::from_secs(120), visit)
}

/// [`read_topic_to_end`] with its time limit.
pub fn read_topic_to_end_within(
    cfg: &Config,
    topic: &str,
    limit: Duration,
    mut visit: impl FnMut(OwnedMessage),
) -> Result<u64, KafkaError> {
    let consumer: BaseConsumer = client_config(
        cfg,
        &[
            ("group.id", "genesys-relay-reader"),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "false"),
        ],
    )
    .create()?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let Some(meta) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(0);
    };
    let mut ends = Vec::new();
    let mut tpl = TopicPartitionList::new();
    for p in meta.partitions() {
        let (low, high) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
        if high > low {
            ends.push((p.id(), high));
            tpl.add_partition_offset(topic, p.id(), Offset::Offset(low))?;
        }
    }
    if ends.is_empty() {
        return Ok(0);
    }
    consumer.assign(&tpl)?;
    let mut remaining: std::collections::HashMap<i32, i64> = ends.into_iter().collect();
    let mut count = 0;
    let deadline = std::time::Instant::now() + limit;
    while !remaining.is_empty() && std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(msg)) => {
                let (p, o) = (msg.partition(), msg.offset());
                if let Some(&end) = remaining.get(&p) {
                    if o < end {
                        visit(msg.detach());
                        count += 1;
                    }
                    if o + 1 >= end {
                        remaining.remove(&p);
                    }
                }
            }
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    if !remaining.is_empty() {
        // A partial read must not pass for the whole topic (`dlq replay --all`).
        tracing::error!(
            topic,
            partitions = remaining.len(),
            "topic not read to its end in time"
        );
        return Err(KafkaError::MessageConsumption(
            rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
        ));
    }
    Ok(count)
}
