//! Reads a topic from the beginning to its current end without a consumer group:
//! used to list dead letters and to warm the idempotency cache.

use super::client_config;
use super::client_context::RelayClientContext;
use super::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::Duration;

/// Calls `visit` for every record of `topic` present when the call started, in partition order.
/// Blocking: run it on a blocking thread. Not reaching the end within the time limit is
/// an error (`OperationTimedOut`), never a silently partial read.
pub fn read_topic_to_end(
    cfg: &impl AsRef<KafkaSettings>,
    topic: &str,
    visit: impl FnMut(OwnedMessage),
) -> Result<u64, KafkaError> {
    read_topic_to_end_within(cfg, topic, Duration::from_secs(120), visit)
}

/// [`read_topic_to_end`] with its time limit.
pub fn read_topic_to_end_within(
    cfg: &impl AsRef<KafkaSettings>,
    topic: &str,
    limit: Duration,
    mut visit: impl FnMut(OwnedMessage),
) -> Result<u64, KafkaError> {
    let consumer: BaseConsumer<RelayClientContext> = client_config(
        cfg,
        &[
            ("group.id", "genesys-relay-reader"),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "false"),
        ],
    )
    .create_with_context(RelayClientContext::new("topic reader"))?;
    let mut remaining = assign_from_beginning(&consumer, topic, Duration::from_secs(10))?;
    if remaining.is_empty() {
        return Ok(0);
    }
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

/// Assigns `consumer` every partition of `topic` from its beginning (metadata, then
/// watermarks, then assign) and returns the end offset of each partition holding records:
/// reading up to those ends reads the topic as it was when called. A topic that does not
/// exist gives no partitions. Blocking.
pub fn assign_from_beginning<Cx: ConsumerContext, C: Consumer<Cx>>(
    consumer: &C,
    topic: &str,
    timeout: Duration,
) -> Result<HashMap<i32, i64>, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions())
    {
        // A topic created a moment ago may not have its leaders yet.
        let mut tries = 0;
        let (low, high) = loop {
            match consumer.fetch_watermarks(topic, p.id(), timeout) {
                Err(e) if tries < 20 => {
                    tries += 1;
                    tracing::debug!(topic, error = %e, "partition not ready; asking again");
                    std::thread::sleep(Duration::from_millis(250));
                }
                r => break r?,
            }
        };
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
        if high > low {
            ends.insert(p.id(), high);
        }
    }
    consumer.assign(&tpl)?;
    Ok(ends)
}
